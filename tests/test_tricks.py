"""The training tricks: each changes exactly what it should, against hand computations
on tiny arrays; the `tricks` space and its report section."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.layers import minibatch_stddev
from models.losses import make_loss
from study.trial import train as training
from study.trial.config import ID_OMITS_AT_DEFAULT, ConfigError, TrialConfig

TRICK_FIELDS = ("label_smoothing", "label_flip_probability", "instance_noise_std", "instance_noise_anneal_steps",
                "latent_distribution", "discriminator_optimizer", "discriminator_sgd_momentum",
                "minibatch_stddev_group_size")


def _softplus(x):
    return np.log1p(np.exp(x))


REAL = np.array([0.0, 2.0, -1.5], np.float32)
FAKE = np.array([-1.0, 1.0, 0.5], np.float32)


def test_label_smoothing_sets_the_real_target_to_one_minus_s():
    """Salimans et al. 2016: real target 0.9. L_D = mean[0.9 sp(-r) + 0.1 sp(r)] + mean sp(f)."""
    for loss_name in ("ns", "mm"):
        loss = make_loss(TrialConfig(loss=loss_name, label_smoothing=0.1))
        got, _ = loss.discriminator_loss(jnp.asarray(REAL), jnp.asarray(FAKE), {})
        want = np.mean(0.9 * _softplus(-REAL) + 0.1 * _softplus(REAL)) + np.mean(_softplus(FAKE))
        np.testing.assert_allclose(float(got), want, rtol=1e-6)
        plain, _ = make_loss(TrialConfig(loss=loss_name)).discriminator_loss(jnp.asarray(REAL), jnp.asarray(FAKE), {})
        np.testing.assert_allclose(float(plain), np.mean(_softplus(-REAL)) + np.mean(_softplus(FAKE)), rtol=1e-6)
        assert abs(float(got) - float(plain)) > 1e-3
        # G's loss is untouched (one-sided: only D's real target)
        assert float(loss.generator_loss(jnp.asarray(FAKE), {})) == float(make_loss(TrialConfig(loss=loss_name))
                                                                             .generator_loss(jnp.asarray(FAKE), {}))


def test_label_tricks_are_refused_where_d_has_no_targets():
    for loss in ("wgan", "ls", "hinge", "began"):
        with pytest.raises(ConfigError, match=f"label_smoothing=0.1 is not allowed with loss='{loss}'"):
            TrialConfig(loss=loss, label_smoothing=0.1)
        with pytest.raises(ConfigError, match="label_flip_probability=0.05 is not allowed"):
            TrialConfig(loss=loss, label_flip_probability=0.05)


def test_noisy_labels_at_zero_are_the_plain_loss_and_at_one_swap_the_targets():
    from models.losses import NonSaturatingLoss, label_targets

    key = jax.random.PRNGKey(0)
    r, f = jnp.asarray(REAL), jnp.asarray(FAKE)
    plain = np.mean(_softplus(-REAL)) + np.mean(_softplus(FAKE))
    np.testing.assert_allclose(float(NonSaturatingLoss(0.0, 0.0).discriminator_loss(r, f, {}, key=key)[0]), plain,
                               rtol=1e-6)
    # p = 1 (beyond the config's 0.5, the loss itself allows it): every target flipped
    swapped = np.mean(_softplus(REAL)) + np.mean(_softplus(-FAKE))
    np.testing.assert_allclose(float(NonSaturatingLoss(0.0, 1.0).discriminator_loss(r, f, {}, key=key)[0]), swapped,
                               rtol=1e-6)
    # with smoothing, a flipped fake gets the smoothed positive target 1 - s
    real_t, fake_t = label_targets(3, 0.1, 1.0, key)
    np.testing.assert_array_equal(np.asarray(real_t), 0.0)
    np.testing.assert_allclose(np.asarray(fake_t), 0.9)
    # p = 0.3: about 30 % flipped, drawn from the key (same key, same flips)
    real_t, fake_t = label_targets(20000, 0.0, 0.3, key)
    assert abs(float(jnp.mean(real_t == 0.0)) - 0.3) < 0.015 and abs(float(jnp.mean(fake_t == 1.0)) - 0.3) < 0.015
    np.testing.assert_array_equal(np.asarray(label_targets(20000, 0.0, 0.3, key)[0]), np.asarray(real_t))
    assert NonSaturatingLoss(0.0, 0.3).needs_key and not NonSaturatingLoss(0.1, 0.0).needs_key
    with pytest.raises(ValueError, match="needs a key"):
        NonSaturatingLoss(0.0, 0.3).discriminator_loss(r, f, {})


def test_instance_noise_variance_is_sigma_squared_at_step_0_and_exactly_0_at_the_anneal_end():
    sigma0, anneal = 0.3, 100
    zeros = jnp.zeros((64, 8, 8, 3), jnp.float32)
    key = jax.random.PRNGKey(1)
    add = jax.jit(training.add_instance_noise)  # one compile, not one per eager random op
    noisy = add(zeros, key, training.instance_noise_scale(0, sigma0, anneal))
    assert abs(float(jnp.var(noisy)) / sigma0**2 - 1) < 0.03  # 12,288 draws: std error of the ratio ~1.3 %
    half = add(zeros, key, training.instance_noise_scale(50, sigma0, anneal))
    np.testing.assert_allclose(np.asarray(half), 0.5 * np.asarray(noisy), rtol=1e-6)  # linear anneal
    x = jax.random.uniform(jax.random.PRNGKey(2), zeros.shape)
    for step in (anneal, anneal + 7):
        assert float(training.instance_noise_scale(step, sigma0, anneal)) == 0.0
        np.testing.assert_array_equal(
            np.asarray(add(x, key, training.instance_noise_scale(step, sigma0, anneal))),
            np.asarray(x))
    assert TrialConfig(instance_noise_std=0.1).instance_noise_anneal_steps == TrialConfig().train_steps
    with pytest.raises(ConfigError, match="instance_noise_anneal_steps=50 is not allowed with instance_noise_std=0"):
        TrialConfig(instance_noise_anneal_steps=50)


def test_normal_latents_have_normal_moments_and_uniform_stays_the_papers():
    key = jax.random.PRNGKey(3)
    z = np.asarray(training.sample_latents(key, (20000, 8), "normal"), np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1.0) < 0.02 and abs(np.mean(z**4) / z.var() ** 2 - 3.0) < 0.1
    u = training.sample_latents(key, (20000, 8), "uniform")
    np.testing.assert_array_equal(np.asarray(u), np.asarray(jax.random.uniform(key, (20000, 8), jnp.float32, -1.0, 1.0)))
    assert abs(float(jnp.var(u)) - 1 / 3) < 0.01


def test_sgd_for_d_applies_the_hand_computed_momentum_update_with_traced_hyperparameters():
    """optax.sgd's heavy ball: v_t = g_t + m v_{t-1}, p_t = p_{t-1} - lr v_t (v_0 = 0)."""
    lr, momentum = 0.1, 0.5
    optimizer = training.make_optimizer(1e-8, "tf", "sgd")
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    state = training._set_hyperparams(optimizer.init(params), lr, 0.5, 0.999, momentum)
    grads = [np.array([0.3, -1.0]), np.array([0.5, 2.0])]
    update = jax.jit(optimizer.update)  # lr and momentum are arrays of the state
    for g in grads:
        updates, state = update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    v1 = grads[0]
    v2 = grads[1] + momentum * v1
    np.testing.assert_allclose(np.asarray(params), np.array([1.0, -2.0]) - lr * v1 - lr * v2, rtol=1e-6)
    assert update._cache_size() == 1
    # Adam's state has no momentum: _set_hyperparams leaves it as it was
    adam = training._set_hyperparams(training.make_optimizer(1e-8).init(params), lr, 0.9, 0.99, momentum)
    assert "momentum" not in adam.hyperparams and float(adam.hyperparams["b1"]) == pytest.approx(0.9)
    with pytest.raises(ConfigError, match="discriminator_sgd_momentum=0.5 is not allowed with discriminator_optimizer='adam'"):
        TrialConfig(discriminator_sgd_momentum=0.5)


def test_minibatch_stddev_equals_a_numpy_computation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 3, 4)).astype(np.float32)
    out = np.asarray(minibatch_stddev(jnp.asarray(x), 4))
    assert out.shape == (8, 2, 3, 5)
    np.testing.assert_array_equal(out[..., :4], x)
    groups = 8 // 4
    for n in range(8):
        members = x[[i for i in range(8) if i % groups == n % groups]].astype(np.float64)  # ProGAN's grouping
        want = np.mean(np.sqrt(members.var(axis=0) + 1e-8))
        np.testing.assert_allclose(out[n, :, :, 4], want, rtol=1e-5)
    # a group larger than the batch is the batch (D's init runs on one example)
    np.testing.assert_allclose(np.asarray(minibatch_stddev(jnp.asarray(x[:1]), 4))[..., 4], np.sqrt(1e-8), rtol=1e-5)
    with pytest.raises(ConfigError, match="minibatch_stddev_group_size=3 is not allowed with batch_size=64"):
        TrialConfig(minibatch_stddev_group_size=3)


def test_minibatch_stddev_feeds_ds_last_conv_one_more_channel():
    import models

    for architecture, last in (("sndcgan", "conv6"), ("resnet_cifar", "block2_conv1")):
        shapes = {}
        for group in (0, 4):
            config = TrialConfig(architecture=architecture, minibatch_stddev_group_size=group, batch_size=8)
            gan = models.build(config, (16, 16, 1))
            d_vars = jax.eval_shape(lambda: gan.init(jax.random.PRNGKey(0))[1])  # shapes only: no compute
            shapes[group] = d_vars["params"][last]["kernel"].shape
        assert shapes[4][2] == shapes[0][2] + 1, (architecture, shapes)


def test_trick_fields_are_left_out_of_the_trial_id_and_compiled_in_except_the_traced_momentum():
    assert set(TRICK_FIELDS) <= set(ID_OMITS_AT_DEFAULT)
    assert TrialConfig().trial_id == "43ad82a20732"  # pinned in tests/test_config.py too
    default = training.program_key(TrialConfig())
    for field, value in (("label_smoothing", 0.1), ("latent_distribution", "normal"),
                         ("discriminator_optimizer", "sgd"), ("minibatch_stddev_group_size", 4),
                         ("instance_noise_std", 0.1)):
        config = TrialConfig(**{field: value})
        assert config.trial_id != TrialConfig().trial_id and training.program_key(config) != default, field
    one, two = (TrialConfig(discriminator_optimizer="sgd", discriminator_sgd_momentum=m) for m in (0.9, 0.5))
    assert training.program_key(one) == training.program_key(two)


def test_the_tricks_space_pairs_every_trick_with_its_baseline_on_both_arms():
    import search_spaces
    from analysis.load import TRICK_DEFAULTS as ANALYSIS_DEFAULTS
    from search_spaces.tricks import TRICK_DEFAULTS, TRICKS

    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    assert TRICK_DEFAULTS == {k: defaults[k] for k in TRICK_DEFAULTS} == ANALYSIS_DEFAULTS
    trials = search_spaces.expand(search_spaces.get("tricks"),
                                  base={"dataset": "digits", "scale": "tiny", "architecture": "sndcgan"})
    assert len(trials) == len(TRICKS) * (24 + 12)  # Table 1 grid: 24 settings with GP, 12 without a penalty
    configs = [TrialConfig.from_dict(t) for t in trials]
    arms = {}
    for trial in trials:
        arms.setdefault(search_spaces.arm_name(trial), []).append(trial)
    assert len(arms) == 2 * len(TRICKS)
    assert "sndcgan/ns/spectral/gp/digits" in arms and "sndcgan/ns/none/none/digits" in arms  # baselines: plain labels
    assert "sndcgan/ns/spectral/gp/digits+label_smoothing=0.1" in arms
    assert len({c.trial_id for c in configs}) == len(configs)
    # --arms trick=...: a trick and its baseline, on both base arms
    chosen = search_spaces.select_arms(search_spaces.get("tricks"),
                                       search_spaces.parse_arm_filter("trick=baseline|label_smoothing=0.1"))
    assert sorted(arm.get("label_smoothing", 0.0) for arm in chosen) == [0.0, 0.0, 0.1, 0.1]
    with pytest.raises(search_spaces.ArmFilterError, match="trick='smoothing' matches no arm"):
        search_spaces.select_arms(search_spaces.get("tricks"), search_spaces.parse_arm_filter("trick=smoothing"))


def test_report_has_a_tricks_section_only_when_the_study_has_trick_arms(tmp_path):
    import pandas as pd

    from analysis.report import build_report
    from analysis.synthetic import _BASE_CONFIG

    rng = np.random.default_rng(0)
    rows = []
    for trick, fields, offset in (("baseline", {}, 0.0), ("ls", {"label_smoothing": 0.1}, -10.0),
                                  ("sgd", {"discriminator_optimizer": "sgd", "discriminator_sgd_momentum": 0.9}, 15.0)):
        for i in range(12):
            config = {**_BASE_CONFIG, **fields, "learning_rate": 1e-4 * (1 + i)}
            rows.append({**config, "study": "tricks", "trial_id": f"{trick}{i:02d}", "arm": f"sndcgan/ns/spectral/gp+{trick}",
                         "search": "grid", "round": 0, "step": 100, "wall_time_s": 1.0, "device_seconds": 1.0,
                         "images_per_s": 10.0, "fid": 40.0 + offset + rng.normal(0, 1), "diverged": False,
                         "status": "completed", "error": "", "final": True, "fid_features": "inception_v3_pool3"})
    with_tricks = tmp_path / "with"
    with_tricks.mkdir()
    pd.DataFrame(rows).to_parquet(with_tricks / "results.parquet", index=False)
    html = build_report([with_tricks]).read_text()
    assert 'id="tricks"' in html and "label_smoothing=0.1" in html and "discriminator_optimizer=sgd" in html
    table = pd.read_csv(with_tricks / "report" / "tables" / "tricks.csv")
    smoothing = table[table["trick"] == "label_smoothing=0.1"].iloc[0]
    assert -12 < smoothing["top_median_diff"] < -8 and smoothing["diff_high"] < 0  # the synthetic truth: 10 better
    sgd = table[table["trick"] == "discriminator_optimizer=sgd"].iloc[0]
    assert sgd["diff_low"] > 0
    plain = tmp_path / "plain"
    plain.mkdir()
    pd.DataFrame([r for r in rows if r["trial_id"].startswith("baseline")]).drop(
        columns=["label_smoothing", "discriminator_optimizer", "discriminator_sgd_momentum"], errors="ignore"
    ).to_parquet(plain / "results.parquet", index=False)
    assert 'id="tricks"' not in build_report([plain]).read_text()


def _trace(config):
    """(jaxpr text of one train step, output shapes) without compiling: abstract state and batches."""
    program = training.build_program(config)
    state = jax.eval_shape(lambda: training.init_state(program, config, jax.random.PRNGKey(0)))
    real = jax.ShapeDtypeStruct((program.batch_slots, config.batch_size, config.image_size, config.image_size, 1),
                                jnp.uint8)
    key = jax.random.PRNGKey(3)
    jaxpr, shapes = jax.make_jaxpr(program.train_step, return_shape=True)(state, real, key)
    return str(jaxpr), shapes


def test_a_train_step_with_every_trick_traces_with_sgd_for_d_and_the_default_draws_no_gaussian():
    """Traced, not compiled (a compile costs ~20 s here): every trick on builds a train step
    whose D state is SGD's momentum trace (G keeps Adam); the default step draws no Gaussian
    (uniform z, no noise: the tricks add no operation), instance noise and normal z do."""
    base = {"scale": "tiny", "batch_size": 8, "train_steps": 20, "eval_every": 10, "discriminator_steps": 1,
            "penalty": "none", "penalty_weight": 0.0}
    every = TrialConfig.from_dict({
        **base, "label_smoothing": 0.1, "label_flip_probability": 0.05, "instance_noise_std": 0.5,
        "instance_noise_anneal_steps": 10, "latent_distribution": "normal", "discriminator_optimizer": "sgd",
        "discriminator_sgd_momentum": 0.5, "minibatch_stddev_group_size": 4})
    text, (state, metrics) = _trace(every)
    kinds = (optax.TraceState, optax.ScaleByAdamState)

    def states(tree):
        return [type(s) for s in jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, kinds))
                if isinstance(s, kinds)]

    assert states(state.discriminator_opt) == [optax.TraceState]
    assert states(state.generator_opt) == [optax.ScaleByAdamState]
    assert "momentum" in state.discriminator_opt.hyperparams and set(metrics) >= {"d_loss", "g_loss", "finite"}
    assert "erf_inv" in text  # Gaussian draws (z, noise)
    default_text, _ = _trace(TrialConfig.from_dict(base))
    assert "erf_inv" not in default_text
    for extra in ({"instance_noise_std": 0.1}, {"latent_distribution": "normal"}):
        assert "erf_inv" in _trace(TrialConfig.from_dict({**base, **extra}))[0], extra
