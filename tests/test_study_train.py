"""The train step: the paper's update order with n_dis as a traced value, one program per arm."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from study.trial import train as training
from study.trial.config import TrialConfig

BASE = {"scale": "tiny", "penalty": "none", "penalty_weight": 0.0, "batch_size": 8, "train_steps": 20,
        "eval_every": 10}


def _adam_count(opt_state) -> int:
    counts = [int(s.count) for s in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)]
    assert len(counts) == 1
    return counts[0]


def _batches(program, config, seed):
    shape = (program.batch_slots, config.batch_size, config.image_size, config.image_size, 1)
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def test_n_dis_1_and_5_share_one_program_and_update_in_the_papers_order():
    one = TrialConfig.from_dict({**BASE, "discriminator_steps": 1})
    five = TrialConfig.from_dict({**BASE, "discriminator_steps": 5, "learning_rate": 1e-3})
    assert training.program_key(one) == training.program_key(five)
    program = training.get_program(one)
    assert training.get_program(five) is program and program.batch_slots == 5
    key = jax.random.PRNGKey(3)
    counts = {}
    for config in (one, five):
        state = training.init_state(program, config, jax.random.PRNGKey(0))
        real = _batches(program, config, 1)
        state, metrics = program.train_step(state, real, key)
        # one call = one group: n_dis D updates (Adam steps of D), exactly one G update
        counts[config.discriminator_steps] = (int(state.step), _adam_count(state.discriminator_opt),
                                              _adam_count(state.generator_opt))
        assert bool(metrics["finite"])
    assert counts == {1: (1, 1, 1), 5: (5, 5, 1)}
    assert program.train_step._cache_size() == 1  # n_dis traced: no second compilation


def test_run_group_makes_the_same_updates_as_the_one_call_group():
    """The trial loop's group (run_group: 1 + (n_dis - 1) calls, faster on XLA:CPU) against the
    one-call train_step: same update counts, same weights to float32 rounding (the SN arm:
    no BN, whose pre-BN biases have a zero gradient that Adam turns rounding noise into steps)."""
    config = TrialConfig.from_dict({**BASE, "normalization": "spectral", "discriminator_steps": 5,
                                    "learning_rate": 1e-3})
    program = training.get_program(config)
    key = jax.random.PRNGKey(3)
    states = []
    for group in (program.train_step, lambda state, real, key: training.run_group(program, state, real, key, 5)):
        state = training.init_state(program, config, jax.random.PRNGKey(0))
        for seed in range(3):
            state, metrics = group(state, _batches(program, config, seed), key)
        assert bool(metrics["finite"]) and set(metrics) >= {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"}
        assert (int(state.step), _adam_count(state.discriminator_opt), _adam_count(state.generator_opt)) == (15, 15, 3)
        states.append(state)
    # Adam turns last-bit differences of tiny gradients into steps of up to lr, so the bound is a
    # fraction of one step (1e-3); reading a wrong slot or key moves weights by many steps.
    for a, b in zip(jax.tree_util.tree_leaves(states[0]), jax.tree_util.tree_leaves(states[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=2e-4)
    swapped = training.init_state(program, config, jax.random.PRNGKey(0))
    for seed in range(3):
        batches = _batches(program, config, seed)
        swapped, _ = training.run_group(program, swapped, batches[jnp.array([0, 2, 1, 3, 4])], key, 5)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(swapped.discriminator["params"]),
        jax.tree_util.tree_leaves(states[1].discriminator["params"]))) > 1e-3
    # The D update's compiled call is shared by every index (a traced int32), and by n_dis 1 and 5.
    assert program.split_group and program.discriminator_update._cache_size() == 1
    # Where the layers are compute bound (small: 32x32, width 1/2) the one call is faster on CPU.
    assert training.split_groups(config) and not training.split_groups(TrialConfig(scale="small"))


def test_the_module_level_d_update_run_eagerly_matches_the_programs_jitted_call():
    """The updates are module-level pure functions of (parts, state, batches, rng, ...); a program's
    callables are them bound to its parts (build_program), jit-compiled (get_program). One D update
    (index 1, after the group's first D and G updates) run eagerly against the jitted call: same
    update count and metrics, same weights to float32 rounding (eager and jit round differently)."""
    config = TrialConfig.from_dict({**BASE, "normalization": "spectral", "discriminator_steps": 5,
                                    "learning_rate": 1e-3})
    program = training.get_program(config)
    parts = program.parts
    assert isinstance(parts, training.ProgramParts) and parts.batch_slots == program.batch_slots
    assert parts.gan is program.gan and parts.discriminator_optimizer is program.discriminator_optimizer
    key = jax.random.PRNGKey(3)
    batches = _batches(program, config, 0)
    state, _ = program.group_start(training.init_state(program, config, jax.random.PRNGKey(0)), batches, key)
    eager = training.discriminator_update(parts, state, batches, key, jnp.int32(1))
    eager = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), eager)  # the jitted call donates `state`
    jitted = program.discriminator_update(state, batches, key, np.int32(1))
    (eager_state, eager_metrics), (jitted_state, jitted_metrics) = eager, jitted
    assert int(eager_state.step) == int(jitted_state.step) == 2 and bool(eager_metrics["finite"])
    for name in ("d_loss", "d_total_loss", "d_grad_norm"):
        np.testing.assert_allclose(eager_metrics[name], np.asarray(jitted_metrics[name]), rtol=1e-5, err_msg=name)
    for a, b in zip(jax.tree_util.tree_leaves(eager_state), jax.tree_util.tree_leaves(jitted_state)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-3, atol=2e-4)


def test_padding_slots_are_never_read_and_the_step_is_deterministic():
    config = TrialConfig.from_dict({**BASE, "discriminator_steps": 1})
    program = training.get_program(config)
    key = jax.random.PRNGKey(3)
    real = _batches(program, config, 1)
    garbage = real.at[1:].set(255)  # slots 1..4 hold padding for n_dis = 1
    results = []
    for batches in (real, garbage, real):
        state = training.init_state(program, config, jax.random.PRNGKey(0))
        state, metrics = program.train_step(state, batches, key)
        results.append(jax.tree_util.tree_leaves((state, metrics)))
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(results[0], results[2]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_second_batch_matters_only_when_n_dis_reads_it():
    config = TrialConfig.from_dict({**BASE, "discriminator_steps": 5})
    program = training.get_program(config)
    key = jax.random.PRNGKey(3)
    real = _batches(program, config, 1)
    changed = real.at[1].set(0)  # the second D update's batch
    outs = []
    for batches in (real, changed):
        state = training.init_state(program, config, jax.random.PRNGKey(0))
        state, _ = program.train_step(state, batches, key)
        outs.append(np.asarray(jax.tree_util.tree_leaves(state.discriminator["params"])[0]))
    assert not np.array_equal(outs[0], outs[1])


def test_pad_batches_fills_the_slots_with_zeros():
    real = jnp.ones((2, 3, 4, 4, 1), jnp.uint8)
    padded = training.pad_batches(real, 5)
    assert padded.shape == (5, 3, 4, 4, 1) and int(padded[:2].sum()) == 2 * 48 and int(padded[2:].sum()) == 0


def test_the_shared_g_forward_matches_the_papers_two_forwards():
    """The first D update and the G update share one G forward; the paper's code runs G twice
    (same z, same weights). The state must be what two forwards give: G's BN averages advanced
    twice with the same batch statistics (bit for bit), and G's gradient through D's new weights."""
    config = TrialConfig.from_dict({**BASE, "architecture": "sndcgan", "normalization": "none",
                                    "discriminator_steps": 1})
    program = training.build_program(config)
    gan = program.gan
    key = jax.random.PRNGKey(3)
    state0 = training.init_state(program, config, jax.random.PRNGKey(0))
    # Train a few groups first so that the averages are not at their initial values.
    step = jax.jit(program.train_step)
    for _ in range(2):
        state0, _ = step(state0, _batches(program, config, 1), key)
    state, metrics = step(state0, _batches(program, config, 2), key)

    z_key, _ = jax.random.split(jax.random.fold_in(key, state0.step))  # D update k uses fold_in(rng, k)
    z = jax.random.uniform(z_key, (config.batch_size, gan.z_dim), jnp.float32, -1.0, 1.0)

    @jax.jit
    def two_forwards(g_vars):
        _, first = gan.generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
        _, second = gan.generator.apply({"params": g_vars["params"], **first}, z, train=True, mutable=["batch_stats"])
        return second["batch_stats"]

    expected = two_forwards(state0.generator)
    assert jax.tree_util.tree_leaves(expected)
    for got, want in zip(jax.tree_util.tree_leaves(state.generator["batch_stats"]), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    @jax.jit
    def g_loss(params):
        images = gan.generator.apply({"params": params, "batch_stats": state0.generator["batch_stats"]}, z,
                                     train=True, mutable=["batch_stats"])[0]
        return gan.loss.generator_loss(gan.discriminator.apply(state.discriminator, images, train=True),
                                       state.loss_state)

    loss, grads = jax.value_and_grad(g_loss)(state0.generator["params"])
    np.testing.assert_allclose(float(metrics["g_loss"]), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["g_grad_norm"]), float(training._global_norm(grads)), rtol=1e-5)
    updates, _ = program.optimizer.update(grads, state0.generator_opt, state0.generator["params"])
    expected_params = optax.apply_updates(state0.generator["params"], updates)
    for got, want in zip(jax.tree_util.tree_leaves(state.generator["params"]), jax.tree_util.tree_leaves(expected_params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)


def _tf_adam_reference(grads, lr, b1, b2, eps, param):
    """tf.train.AdamOptimizer's documented update, by hand in float64 numpy."""
    m = np.zeros_like(param)
    v = np.zeros_like(param)
    params = []
    for t, g in enumerate(grads, start=1):
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        param = param - lr_t * m / (np.sqrt(v) + eps)
        params.append(param)
    return params


def test_adam_is_tensorflows_by_default_with_traced_hyperparameters():
    """adam_form "tf" (the default) applies eps to the uncorrected sqrt(v) ("epsilon hat");
    gradients of 1e-6 make it differ from optax.adam by ~50 % in the first steps."""
    assert TrialConfig().adam_form == "tf"
    assert training.program_key(TrialConfig()) != training.program_key(TrialConfig(adam_form="optax"))
    lr, b1, b2, eps = 3e-4, 0.9, 0.99, 1e-8  # not make_optimizer's placeholders: set as traced values
    rng = np.random.default_rng(0)
    grads = [np.concatenate([rng.normal(size=3), 1e-6 * rng.choice([-1.0, 1.0], size=3)]) for _ in range(4)]
    param = np.zeros(6)  # Adam ignores the value; zeros keep float32 rounding far below the steps
    expected = _tf_adam_reference(grads, lr, b1, b2, eps, param)

    def run(form):
        optimizer = training.make_optimizer(eps, form)
        params = jnp.asarray(param, jnp.float32)
        state = training._set_hyperparams(optimizer.init(params), lr, b1, b2)
        update = jax.jit(optimizer.update)  # one trace: lr/b1/b2 are arrays of the state
        out = []
        for g in grads:
            updates, state = update(jnp.asarray(g, jnp.float32), state, params)
            params = optax.apply_updates(params, updates)
            out.append(np.asarray(params, np.float64))
        return out

    for got, want in zip(run("tf"), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    # The forms differ where |g| ~ eps / sqrt(1 - b2^t): the first step's 1e-6 gradients.
    optax_first = run("optax")[0]
    steps_tf, steps_optax = (expected[0] - param)[3:], (optax_first - param)[3:]
    assert np.all(np.abs(steps_optax / steps_tf - 1) > 0.05), (steps_tf, steps_optax)


def _power_iteration(kernel, u):
    """One step of compare_gan v2 ops.spectral_norm's power iteration, by hand in numpy."""
    w = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    normalize = lambda x: x / (np.sqrt(np.sum(x * x)) + 1e-12)  # noqa: E731
    v = normalize(w.T @ u)
    return normalize(w @ v)


def test_spectral_norm_runs_one_power_iteration_per_d_update_with_one_sigma():
    """v2 evaluates D(real) and D(fake) as two branches of one graph: both read the same u
    (one sigma) and u advances once per D update, plus once in the G step. One group with
    n_dis = 1: u = iteration(W after the D update, iteration(W before, u0)) for every layer,
    and the D loss is that of both logits normalised from u0."""
    config = TrialConfig.from_dict({**BASE, "discriminator_steps": 1})
    assert config.normalization == "spectral" and config.loss == "ns"
    program = training.get_program(config)
    gan = program.gan
    key = jax.random.PRNGKey(3)
    state0 = training.init_state(program, config, jax.random.PRNGKey(0))
    before = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state0)  # train_step donates state0
    real = _batches(program, config, 1)
    state, metrics = program.train_step(state0, real, key)

    spectral = jax.tree_util.tree_flatten_with_path(before.discriminator["spectral"])[0]
    assert len(spectral) == 8  # 7 convs and the linear of SNDCGAN's D
    for path, u0 in spectral:
        layer = path[0].key
        once = _power_iteration(before.discriminator["params"][layer]["kernel"], u0)  # the D update's
        expected = _power_iteration(np.asarray(state.discriminator["params"][layer]["kernel"]), once)  # the G step's
        got = np.asarray(state.discriminator["spectral"][layer]["u"])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=layer)

    # Both logits of the D update normalised with the sigma of one iteration from u0: each
    # apply below starts from u0.
    z_key, _ = jax.random.split(jax.random.fold_in(key, 0))  # D update k uses fold_in(rng, k)
    z = jax.random.uniform(z_key, (config.batch_size, gan.z_dim), jnp.float32, -1.0, 1.0)
    fake = gan.generator.apply(before.generator, z, train=True, mutable=["batch_stats"])[0]
    images = training.to_model_range(real[0], tuple(gan.data_range))

    def logits(x):
        return gan.discriminator.apply(before.discriminator, x, train=True, mutable=["spectral"])[0]

    expected_loss, _ = gan.loss.discriminator_loss(logits(images), logits(fake), before.loss_state)
    np.testing.assert_allclose(float(metrics["d_loss"]), float(expected_loss), rtol=1e-5)


def test_began_updates_k_once_per_step_after_the_g_update_with_the_new_weights():
    """v2's BEGAN runs update_k after each training step (D's update, and G's when the group
    has one) on the step's real batch and z, with the updated weights; k is not clipped."""
    config = TrialConfig.from_dict({**BASE, "loss": "began", "normalization": "none", "discriminator_steps": 1,
                                    "began_k_learning_rate": 0.5})
    program = training.build_program(config)
    gan = program.gan
    key = jax.random.PRNGKey(3)
    state0 = training.init_state(program, config, jax.random.PRNGKey(0))
    real = _batches(program, config, 1)
    state, _ = jax.jit(program.train_step)(state0, real, key)

    z_key, _ = jax.random.split(jax.random.fold_in(key, 0))  # D update k uses fold_in(rng, k)
    z = jax.random.uniform(z_key, (config.batch_size, gan.z_dim), jnp.float32, -1.0, 1.0)
    fake = gan.generator.apply(state.generator, z, train=True, mutable=["batch_stats"])[0]
    images = training.to_model_range(real[0], tuple(gan.data_range))

    def errors(x):
        return gan.discriminator.apply(state.discriminator, x, train=True, mutable=["batch_stats"])[0]

    expected = 0.0 + 0.5 * (0.5 * float(jnp.mean(errors(images))) - float(jnp.mean(errors(fake))))
    assert float(state0.loss_state["k"]) == 0.0 and expected != 0.0
    np.testing.assert_allclose(float(state.loss_state["k"]), expected, rtol=1e-4)


# d_loss, g_loss, d_grad_norm, g_grad_norm, sum of G's params, sum of 4 samples after two steps,
# computed on main at efb2adc (before class-conditioning entered the train step) by this test's code.
MAIN_VALUES = [1.3857085704803467, 0.6936132907867432, 0.23427714407444, 0.0072751836851239204,
               125.48062133789062, 127.73285675048828]


def test_unconditional_step_is_unchanged_by_the_conditional_code():
    """Issue 18 added labels to the train step; an unconditional program must compute exactly what
    it did before. Values of two steps from main at efb2adc (before conditioning), this config."""
    config = TrialConfig.from_dict({**BASE, "discriminator_steps": 1})
    program = training.get_program(config)
    assert not program.labelled
    state = training.init_state(program, config, jax.random.PRNGKey(0))
    for seed in (1, 2):
        state, metrics = program.train_step(state, _batches(program, config, seed), jax.random.PRNGKey(3))
    got = [float(metrics[k]) for k in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm")]
    got.append(float(sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(state.generator["params"]))))
    got.append(float(np.asarray(program.sample(state.generator, 0, 4)).sum()))
    np.testing.assert_allclose(got, MAIN_VALUES, rtol=1e-6)


def test_a_conditional_step_reads_the_real_labels_and_refuses_to_run_without_them():
    config = TrialConfig.from_dict({**BASE, "discriminator_steps": 1, "conditioning": "projection"})
    program = training.get_program(config)
    assert program.labelled
    real = _batches(program, config, 1)
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 10, real.shape[:2], dtype=np.int32))
    outs = []
    for batch_labels in (labels, (labels + 1) % 10, labels.at[1:].set(0)):  # slots 1.. are padding at n_dis 1
        state = training.init_state(program, config, jax.random.PRNGKey(0))
        state, metrics = program.train_step(state, real, jax.random.PRNGKey(3), batch_labels)
        assert bool(metrics["finite"])
        outs.append(np.asarray(state.discriminator["params"]["embedding"]["embedding"]))
    assert not np.array_equal(outs[0], outs[1])  # the projection D learns from the real labels
    np.testing.assert_array_equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="needs the real batches' labels"):
        program.train_step(state, real, jax.random.PRNGKey(3))
    # The conditional sampler draws the requested classes (same z per position, other classes:
    # other images, once G's per-class BN affines of the classes drawn in training moved).
    a = np.asarray(program.sample(state.generator, 0, 10, labels=jnp.arange(10)))
    b = np.asarray(program.sample(state.generator, 0, 10, labels=jnp.arange(10)[::-1]))
    np.testing.assert_array_equal(a, np.asarray(program.sample(state.generator, 0, 10, labels=jnp.arange(10))))
    assert not np.array_equal(a, b)
