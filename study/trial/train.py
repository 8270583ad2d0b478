"""Training: the train state, the update functions of one group, and the trial loop's pieces.

Semantics follow the paper's code (compare_gan_v2 §5): `train_steps` counts
discriminator updates; every D update gets a fresh real batch and fresh
z ~ U[-1, 1]^z_dim; G is updated after the first D update of each group of
`discriminator_steps` with that step's z (the code's `(step - 1) % disc_iters == 0`);
Adam(lr, beta1, beta2, eps) for each net (as TensorFlow computes it unless
config.adam_form = "optax"), constant lr, no weight EMA; G's batch norm
in training mode in both updates (G's forward for those two updates is computed once:
same z, same weights, same images; its moving averages still advance twice, as there).

The updates are module-level pure functions whose first argument is the program's
`ProgramParts` (the built GAN, both optimizers, the config's compiled-in constants);
`build_program` binds it (functools.partial) into the `Program` the trial loop calls.
One group is `train_step`: `group_start` (the first D update and the G update sharing its
z), then n_dis - 1 `discriminator_update`s, all inside one jit-compiled call (a
`lax.while_loop` over the extra D updates, no host round trip). On CPU at tiny shapes
`run_group` calls the same `group_start` and `discriminator_update` from the host instead
(measured faster there: XLA:CPU runs a D update inside the while_loop slower than as a call
of its own). Hyperparameters (lr, betas, lambda) and n_dis itself live in the state as
arrays, so every trial of an arm -- the whole Table 1 grid of 24 settings, n_dis 1 and 5
included -- shares one compiled program. The program takes a fixed number of real-batch
slots (`batch_slots`, 5 for n_dis <= 5); a group fills the first n_dis and the rest are
padding that is never read.

Training tricks (config fields, all off by default, adding no operation then): label
smoothing / noisy labels in the NS/MM loss (Salimans et al. 2016; models.losses), instance
noise on every input of D (Sonderby et al. 2016: real, fake, the penalty's points, and G's
step through D), normal z for training and evaluation, SGD with momentum for D, the
minibatch-stddev feature (Karras et al. 2018; the architectures). Conditional and InfoGAN
programs (models.conditional) add their labels / codes and auxiliary losses.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import models
import models.conditional
import models.layers
from models.conditional import split_output
from study import data
from study.trial.config import TrialConfig

PyTree = Any

# D collections that every branch of one D update reads as the update found them
# (spectral norm's u); the others (batch norm's averages) chain from branch to branch.
_SHARED_BY_BRANCHES = ("spectral",)

# Real-batch slots of a train-step call for every n_dis up to it: the paper's n_dis 1
# and 5 then share one program. (A traced n_dis inside a lax.cond per D update was
# measured slower per D step on CPU: the conditional copies the whole state.)
BATCH_SLOTS = 5

EVAL_LATENT_SEED = 42  # the paper's code draws eval z with np.random.seed(42): same latents every checkpoint


@flax.struct.dataclass
class TrainState:
    """Everything that evolves during training; a checkpoint is exactly this pytree."""

    step: jnp.ndarray  # int32 scalar: D updates done
    generator: dict  # {"params": ..., "batch_stats": ...}
    discriminator: dict  # {"params": ..., plus "batch_stats" / "spectral" as used}
    generator_opt: optax.OptState
    discriminator_opt: optax.OptState
    loss_state: dict  # {} or BEGAN's {"k": ...}
    penalty_weight: jnp.ndarray  # lambda, float32 scalar (traced, not compiled in)
    discriminator_steps: jnp.ndarray  # n_dis, int32 scalar (traced, not compiled in)


@dataclasses.dataclass(frozen=True)
class Program:
    """The compiled pieces shared by every trial with the same program key."""

    gan: Any
    optimizer: optax.GradientTransformation
    init: Callable[[jax.Array], TrainState]
    train_step: Callable  # (state, real_batches uint8 [batch_slots, B, H, W, C], rng) -> (state, metrics)
    sample: Callable  # (generator_variables, batch_index, batch_size) -> images [b, H, W, C] in data range
    batch_slots: int  # real-batch slots of a train_step call (>= n_dis)
    # D's optimizer (config.discriminator_optimizer); None: `optimizer`, as G's
    discriminator_optimizer: optax.GradientTransformation | None = None
    # Class-conditional program: train_step also takes the real batches' labels int32 [batch_slots, B]
    # (4th argument) and sample takes labels=int [b] (None: uniform from the eval key).
    labelled: bool = False
    # The group as separate calls (`run_group`): (state, real_batches, rng[, real_labels]) -> (state, metrics)
    # and (state, real_batches, rng, index[, real_labels]) -> (state, D metrics)
    group_start: Callable | None = None
    discriminator_update: Callable | None = None
    # Whether run_group uses the separate calls (True) or the one-call train_step (`split_groups`).
    split_group: bool = False
    # What the callables above are bound to (`build_program`): call the module's functions with it.
    parts: ProgramParts | None = None


def batch_slots(config: TrialConfig) -> int:
    """Real-batch slots of the program: BATCH_SLOTS, or n_dis when it is larger."""
    return max(BATCH_SLOTS, config.discriminator_steps)


def program_key(config: TrialConfig) -> tuple:
    """Trials with equal keys share one compiled program (n_dis, lr, betas, lambda differ freely):
    ((field, value) for each of `TrialConfig.program_fields()`, in their order, then ("batch_slots", n))."""
    return (*((name, getattr(config, name)) for name in TrialConfig.program_fields()),
            ("batch_slots", batch_slots(config)))


@functools.partial(jax.jit, static_argnums=1)
def pad_batches(real_batches: jnp.ndarray, slots: int) -> jnp.ndarray:
    """[n_dis, B, H, W, C] -> [slots, B, H, W, C] with zero padding, on the device (the
    host sends only the batches a group uses)."""
    missing = slots - real_batches.shape[0]
    return jnp.pad(real_batches, [(0, missing)] + [(0, 0)] * (real_batches.ndim - 1))


def image_shape(config: TrialConfig) -> tuple[int, int, int]:

    return (config.image_size, config.image_size, data.info(config.dataset).channels)


def scale_by_tf_adam(b1, b2, eps) -> optax.GradientTransformation:
    """Adam's direction as tf.train.AdamOptimizer computes it (compare_gan_v2 §10):
    m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, t <- t + 1,
    update = sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),
    i.e. TF's "epsilon hat": eps is added to the uncorrected sqrt(v), where optax.adam adds
    it to sqrt(v_hat) = sqrt(v / (1 - b2^t)). The two differ where sqrt(v_hat) is not large
    against eps (|g| <~ 1e-5) in the first ~1 / (1 - b2) steps. The state is optax's
    ScaleByAdamState, so a TrainState has the same layout under either form."""

    def init_fn(params):
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params),
                                      nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        step_size = jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        updates = jax.tree_util.tree_map(lambda m, v: step_size * m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def tf_adam(learning_rate, b1, b2, eps) -> optax.GradientTransformation:
    """tf.train.AdamOptimizer(learning_rate, b1, b2, eps): params -= lr * scale_by_tf_adam."""
    return optax.chain(scale_by_tf_adam(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))


# config.adam_form -> the Adam factory; both take (learning_rate, b1, b2, eps).
ADAM_FORMS = {"tf": tf_adam, "optax": optax.adam}


def _adam(form: str = "tf"):
    # inject_hyperparams keeps lr/b1/b2 in the optimizer state as arrays (traced values).
    return optax.inject_hyperparams(ADAM_FORMS[form])


def make_optimizer(adam_epsilon: float, adam_form: str = "tf", kind: str = "adam") -> optax.GradientTransformation:
    """The optimizer with its hyperparameters in its state (placeholders until `_set_hyperparams`).

    kind "adam": Adam as `adam_form`; "sgd" (config.discriminator_optimizer, a training trick):
    optax.sgd, heavy-ball momentum v <- g + m v, params -= lr v (m = 0: plain SGD), lr and m traced."""
    if kind == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=1e-4, momentum=0.9)
    if kind != "adam":
        raise ValueError(f"optimizer kind={kind!r} is not allowed; choose adam or sgd")
    return _adam(adam_form)(learning_rate=1e-4, b1=0.5, b2=0.999, eps=adam_epsilon)


def _set_hyperparams(opt_state, learning_rate: float, beta1: float, beta2: float, momentum: float | None = None):
    """Sets lr, and Adam's betas or SGD's momentum, whichever the optimizer has."""
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    if "b1" in hp:
        hp["b1"] = jnp.asarray(beta1, jnp.float32)
        hp["b2"] = jnp.asarray(beta2, jnp.float32)
    if "momentum" in hp and momentum is not None:
        hp["momentum"] = jnp.asarray(momentum, jnp.float32)
    return opt_state._replace(hyperparams=hp)


def sample_latents(key: jax.Array, shape: tuple[int, int], distribution: str = "uniform") -> jnp.ndarray:
    """z [batch, z_dim] float32: "uniform" U[-1, 1] (the paper) or "normal" N(0, 1)
    (config.latent_distribution); training and evaluation draw from the same one."""
    if distribution == "normal":
        return jax.random.normal(key, shape, jnp.float32)
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)


def instance_noise_scale(step: jnp.ndarray, std: float, anneal_steps: int) -> jnp.ndarray:
    """sigma_t = std * max(0, 1 - t / anneal_steps): std at t = 0, linearly to exactly 0 at
    t = anneal_steps and after (Sonderby et al. 2016 anneal the noise to zero)."""
    t = jnp.asarray(step, jnp.float32)
    return std * jnp.maximum(0.0, 1.0 - t / float(anneal_steps))


def add_instance_noise(x: jnp.ndarray, key: jax.Array, sigma: jnp.ndarray) -> jnp.ndarray:
    """Instance noise (Sonderby et al. 2016; Arjovsky & Bottou 2017): x + sigma * N(0, I),
    one independent draw per element of x [batch, H, W, C]; sigma = 0 adds exactly 0."""
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def to_model_range(images_uint8: jnp.ndarray, data_range: tuple[float, float]) -> jnp.ndarray:
    """uint8 [..., H, W, C] in [0, 255] -> float32 in `data_range` ([0, 1], or [-1, 1] for TAN)."""
    low, high = data_range
    return images_uint8.astype(jnp.float32) * ((high - low) / 255.0) + low


def _split_collections(variables: dict) -> tuple[PyTree, dict]:
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    return params, rest


def _global_norm(tree: PyTree) -> jnp.ndarray:
    return optax.tree.norm(tree)


# The G update's metrics in a group's metrics; the others are the last D update's.
_G_METRICS = ("g_loss", "g_grad_norm")


def _with_finite(metrics: dict) -> dict:
    """metrics plus "finite": bool scalar, every metric finite."""
    return {**metrics, "finite": jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))}


def _merge_group_metrics(first: dict, last_d: dict) -> dict:
    """A group's metrics: the last D update's, the G update's, finite only when both calls' were."""
    return {**first, **last_d, "finite": jnp.logical_and(first["finite"], last_d["finite"])}


# ---------------------------------------------------------------------------- the program's parts
@dataclasses.dataclass(frozen=True)
class ProgramParts:
    """What the update functions of one program share, fixed when it is built (`build_parts`):
    all of it is compiled in. What differs between the trials of a program (lr, betas, lambda,
    n_dis) is in the TrainState instead."""

    gan: models.GAN  # models.build: generator, discriminator, loss, penalty, condition, z_dim, data_range
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation  # G's, unless config.discriminator_optimizer = "sgd"
    batch_size: int
    latent_distribution: str  # of z, in training and evaluation (`sample_latents`)
    instance_noise_std: float  # 0: no instance noise
    instance_noise_anneal_steps: int | None
    batch_norm_momentum: float | None  # of G's batch norm; None: G keeps no moving averages
    batch_slots: int  # real-batch slots of a train_step call (>= n_dis)

    @property
    def condition(self) -> models.conditional.ConditionSpec:
        """Labels / InfoGAN codes (models.conditional); inactive for the paper's GANs."""
        return self.gan.condition

    @property
    def z_dim(self) -> int:
        return self.gan.z_dim

    @property
    def data_range(self) -> tuple[float, float]:
        return tuple(self.gan.data_range)


def build_parts(config: TrialConfig, slots: int | None = None) -> ProgramParts:
    """The parts of `config`'s program; slots: real-batch slots per train_step call (default `batch_slots(config)`)."""
    gan = models.build(config, image_shape(config), data.info(config.dataset).num_classes)
    optimizer = make_optimizer(config.adam_epsilon, config.adam_form)
    d_optimizer = (optimizer if config.discriminator_optimizer == "adam"
                   else make_optimizer(config.adam_epsilon, config.adam_form, config.discriminator_optimizer))
    return ProgramParts(
        gan=gan,
        generator_optimizer=optimizer,
        discriminator_optimizer=d_optimizer,
        batch_size=config.batch_size,
        latent_distribution=config.latent_distribution,
        instance_noise_std=config.instance_noise_std,
        instance_noise_anneal_steps=config.instance_noise_anneal_steps,
        batch_norm_momentum=getattr(gan.generator, "batch_norm_momentum", None),
        batch_slots=batch_slots(config) if slots is None else int(slots),
    )


# ---------------------------------------------------------------------------- G, D and their inputs
def generate(parts: ProgramParts, g_vars: dict, z: jnp.ndarray, conditions: dict | None = None
             ) -> tuple[jnp.ndarray, dict]:
    """G(z) in training mode: z float32 [B, z_dim] -> (images float32 [B, H, W, C] in the data
    range, G's variables with its batch-norm averages advanced). With `conditions` (a conditional
    or InfoGAN program: labels int32 [B] / codes, `fake_conditions`) G(z, y) or G([z, c])."""
    params, rest = _split_collections(g_vars)
    kwargs = {}
    if conditions is not None:
        z, kwargs = parts.condition.generator_inputs(z, conditions)
    images, updates = parts.gan.generator.apply({"params": params, **rest}, z, train=True, mutable=list(rest),
                                                **kwargs)
    return images, {"params": params, **updates}


def discriminate(parts: ProgramParts, d_params: PyTree, d_rest: dict, x: jnp.ndarray, labels=None
                 ) -> tuple[Any, dict]:
    """D(x) in training mode: x float32 [B, H, W, C] -> (output, D's collections after the call).
    The output is logits [B], or (logits, auxiliary head) in an ACGAN / InfoGAN program
    (models.conditional); `labels` int32 [B] reach D only in a projection program."""
    kwargs = parts.condition.discriminator_kwargs(labels) if parts.condition.active else {}
    out, updates = parts.gan.discriminator.apply({"params": d_params, **d_rest}, x, train=True,
                                                 mutable=list(d_rest), **kwargs)
    return out, {**d_rest, **updates}


def discriminate_pair(parts: ProgramParts, d_params: PyTree, d_rest: dict, real: jnp.ndarray, fake: jnp.ndarray,
                      real_labels=None, fake_labels=None):
    """D(real) and D(fake) of one D update as v2's two branches of one graph: both read
    the same spectral-norm u, so both use one sigma and u advances by one power iteration
    per D update (compare_gan_v2 §10). Batch norm keeps per-branch batch statistics; its
    moving averages advance real then fake. real, fake: float32 [B, H, W, C]. Returns (real
    output, fake output, D's collections after the update, d_fn: x -> D(x) with that same u
    (the penalty's D)). A conditional program's outputs may carry an auxiliary head
    (models.conditional.split_output); its penalty's D reads the real labels (for the
    interpolates of GP too) and returns logits."""
    read = {k: v for k, v in d_rest.items() if k in _SHARED_BY_BRANCHES}
    real_out, rest = discriminate(parts, d_params, d_rest, real, real_labels)
    # The fake branch starts from u as the update found it; it writes the same new u.
    fake_out, rest = discriminate(parts, d_params, {**rest, **read}, fake, fake_labels)

    def d_fn(x):
        out = discriminate(parts, d_params, {**rest, **read}, x, real_labels)[0]
        return split_output(out)[0] if parts.condition.active else out

    return real_out, fake_out, rest, d_fn


def latents(parts: ProgramParts, rng: jax.Array) -> tuple[jnp.ndarray, jax.Array]:
    """A D update's key -> (z float32 [batch, z_dim] ~ U[-1, 1] or config.latent_distribution,
    the penalty's key). The tricks' draws (instance noise, label flips) use keys folded
    from the penalty's key, so at their defaults z and the penalty draw what they drew before."""
    z_key, penalty_key = jax.random.split(rng)
    return sample_latents(z_key, (parts.batch_size, parts.z_dim), parts.latent_distribution), penalty_key


def fake_conditions(parts: ProgramParts, rng: jax.Array) -> dict | None:
    """A D update's key -> its fake batch's labels int32 [batch] / InfoGAN codes (uniform, from
    fold_in(key, CONDITION_STREAM): z and the penalty's key stay as in the unconditional
    step); None in an unconditional program."""
    if not parts.condition.active:
        return None
    return parts.condition.draw(jax.random.fold_in(rng, models.conditional.CONDITION_STREAM), parts.batch_size)


def noised(parts: ProgramParts, x: jnp.ndarray, key: jax.Array, step: jnp.ndarray, stream: int) -> jnp.ndarray:
    """D's input x [B, H, W, C] with instance noise at `step` (D updates done), drawn from
    fold_in(key, stream); x itself when instance noise is off."""
    if not parts.instance_noise_std:
        return x
    key = jax.random.fold_in(key, stream)
    return add_instance_noise(
        x, key, instance_noise_scale(step, parts.instance_noise_std, parts.instance_noise_anneal_steps))


def labels_at(parts: ProgramParts, real_labels: jnp.ndarray | None, index) -> jnp.ndarray | None:
    """Slot `index` of the real batches' labels int32 [slots, B] -> [B]; None where the program
    takes no labels."""
    if not parts.condition.labelled:
        return None
    if real_labels is None:
        raise ValueError("a class-conditional program's train step needs the real batches' labels")
    return jax.lax.dynamic_index_in_dim(real_labels, index, keepdims=False)


def advance_averages(parts: ProgramParts, averages: dict, scaled_batch_stats: dict) -> dict:
    """Flax BatchNorm's moving-average update, average <- momentum * average + (1 - momentum)
    * batch statistic, given (1 - momentum) * batch statistic exactly as BatchNorm computes it."""
    momentum = parts.batch_norm_momentum
    return jax.tree_util.tree_map(lambda average, scaled: momentum * average + scaled,
                                  averages, scaled_batch_stats)


# ---------------------------------------------------------------------------- the losses
def discriminator_loss(parts: ProgramParts, d_params: PyTree, d_rest: dict, state: TrainState, real: jnp.ndarray,
                       fake: jnp.ndarray, penalty_key: jax.Array, real_labels=None, conditions=None,
                       label_key: jax.Array | None = None):
    """D's total loss, differentiable in d_params: the GAN loss + lambda * penalty, plus in a
    conditional / InfoGAN program its auxiliary term (ACGAN's class loss, InfoGAN's MI term).
    real, fake: D's inputs float32 [B, H, W, C]; label_key: the label flips' key (losses that
    need one). Returns (total, (D's collections after, loss state, loss, penalty, aux loss or None))."""
    fake_labels = conditions.get("labels") if conditions is not None else None
    real_out, fake_out, rest, d_fn = discriminate_pair(parts, d_params, d_rest, real, fake, real_labels, fake_labels)
    aux_loss = None
    if parts.condition.active:
        (real_out, real_aux), (fake_out, fake_aux) = split_output(real_out), split_output(fake_out)
        aux_loss = parts.condition.discriminator_loss(real_aux, real_labels, fake_aux, conditions)
    loss_kwargs = {} if label_key is None else {"key": label_key}
    loss, loss_state = parts.gan.loss.discriminator_loss(real_out, fake_out, state.loss_state, **loss_kwargs)

    penalty = parts.gan.penalty(d_fn, d_params, real, fake, penalty_key)
    total = loss + state.penalty_weight * penalty
    if aux_loss is not None:
        total = total + aux_loss
    return total, (rest, loss_state, loss, penalty, aux_loss)


def generator_loss(parts: ProgramParts, fake: jnp.ndarray, d_params: PyTree, d_rest: dict, state: TrainState,
                   penalty_key: jax.Array, conditions=None) -> tuple[jnp.ndarray, dict]:
    """G's loss on its images fake float32 [B, H, W, C] through D in training mode,
    differentiable in fake, plus ACGAN's class loss / InfoGAN's MI term on them in such a
    program. Returns (loss scalar, D's collections after the call: SN's u advances here too)."""
    # G is trained through the D that sees noised inputs (instance noise; none by default).
    fake = noised(parts, fake, penalty_key, state.step, 4)
    if parts.condition.active:
        fake_out, new_d_rest = discriminate(parts, d_params, d_rest, fake, conditions.get("labels"))
        fake_out, fake_aux = split_output(fake_out)
        loss = parts.gan.loss.generator_loss(fake_out, state.loss_state)
        aux_loss = parts.condition.generator_loss(fake_aux, conditions)
        return (loss if aux_loss is None else loss + aux_loss), new_d_rest
    fake_out, new_d_rest = discriminate(parts, d_params, d_rest, fake)
    return parts.gan.loss.generator_loss(fake_out, state.loss_state), new_d_rest


# ---------------------------------------------------------------------------- the updates
def discriminator_gradient_step(parts: ProgramParts, state: TrainState, real_uint8: jnp.ndarray, fake: jnp.ndarray,
                                generator: dict, penalty_key: jax.Array, real_labels=None, conditions=None
                                ) -> tuple[TrainState, dict]:
    """D's optimizer step on a real batch uint8 [B, H, W, C] and G's images float32
    [B, H, W, C] (no gradient to G): what every D update does once it has its images.
    `generator`: G's variables after the forward that made `fake` (the state keeps them).
    real_labels int32 [B] and `conditions` (the fake batch's): conditional / InfoGAN programs.
    Returns (state with step + 1, metrics: scalars d_loss, d_total_loss, d_penalty,
    d_grad_norm, and d_aux_loss where there is an auxiliary term)."""
    real = to_model_range(real_uint8, parts.data_range)
    # Instance noise on both of D's inputs; the penalty then sees the noised points too
    # (GP's interpolates lie between the points D is trained on: D learns the noised
    # distributions, and its constraint is where it is evaluated).
    real = noised(parts, real, penalty_key, state.step, 1)
    fake = noised(parts, fake, penalty_key, state.step, 2)
    d_params, d_rest = _split_collections(state.discriminator)
    label_key = jax.random.fold_in(penalty_key, 3) if getattr(parts.gan.loss, "needs_key", False) else None
    (total, (new_d_rest, loss_state, loss, penalty, aux_loss)), grads = jax.value_and_grad(
        lambda params: discriminator_loss(parts, params, d_rest, state, real, fake, penalty_key, real_labels,
                                          conditions, label_key),
        has_aux=True)(d_params)
    updates, d_opt = parts.discriminator_optimizer.update(grads, state.discriminator_opt, d_params)
    d_params = parts.gan.penalty.project(optax.apply_updates(d_params, updates))
    state = state.replace(
        generator=generator,
        discriminator={"params": d_params, **new_d_rest},
        discriminator_opt=d_opt,
        loss_state=loss_state,
        step=state.step + 1,
    )
    metrics = {"d_loss": loss, "d_total_loss": total, "d_penalty": penalty, "d_grad_norm": _global_norm(grads)}
    if aux_loss is not None:
        metrics["d_aux_loss"] = aux_loss  # weighted ACGAN class loss / InfoGAN MI term
    return state, metrics


def shared_generator_forward(parts: ProgramParts, g_vars: dict, z: jnp.ndarray, conditions: dict | None = None):
    """G's one forward for the group's first D update and its G update, which share z [B, z_dim]
    and G's weights. Returns (images float32 [B, H, W, C], pullback: image cotangent -> (G's
    params' gradient,), scaled_batch_stats: (1 - momentum) * the batch's statistic per BN average).

    The paper's code runs G twice with the same z and weights (once per update): the same
    images (train-mode BN normalises with the batch's own statistics) and the BN moving
    averages advanced twice with the same batch statistics, which is what the state gets
    (`advance_averages`, once per update). Run from zero averages, BatchNorm's update returns
    (1 - momentum) * batch statistic, bit for bit the term it adds to a real average."""
    g_params, g_rest = _split_collections(g_vars)
    if parts.batch_norm_momentum is None and jax.tree_util.tree_leaves(g_rest):
        raise TypeError(f"generator {type(parts.gan.generator).__name__} keeps {sorted(g_rest)} but has no "
                        "batch_norm_momentum; the train step needs it to advance its averages")
    zero_averages = jax.tree_util.tree_map(jnp.zeros_like, g_rest)

    def forward(params):
        images, new_vars = generate(parts, {"params": params, **zero_averages}, z, conditions)
        return images, _split_collections(new_vars)[1]

    return jax.vjp(forward, g_params, has_aux=True)


def generator_update(parts: ProgramParts, state: TrainState, images: jnp.ndarray, pullback: Callable,
                     scaled_batch_stats: dict, penalty_key: jax.Array, conditions=None):
    """The G update, right after the group's first D update and through D's new weights, on
    that update's images float32 [B, H, W, C] (`shared_generator_forward`: `pullback` and
    `scaled_batch_stats` come with them). G's BN averages advance a second time with the same
    batch statistics (the paper's second G forward). Returns (state, g_loss scalar, G's gradients)."""
    g_params, g_rest = _split_collections(state.generator)
    d_params, d_rest = _split_collections(state.discriminator)
    (loss, new_d_rest), image_grads = jax.value_and_grad(
        lambda fake: generator_loss(parts, fake, d_params, d_rest, state, penalty_key, conditions),
        has_aux=True)(images)
    (grads,) = pullback(image_grads)
    updates, g_opt = parts.generator_optimizer.update(grads, state.generator_opt, g_params)
    g_params = optax.apply_updates(g_params, updates)
    state = state.replace(
        generator={"params": g_params, **advance_averages(parts, g_rest, scaled_batch_stats)},
        # The paper's code updates SN's u whenever D is evaluated, the G step included.
        discriminator={"params": d_params, **new_d_rest},
        generator_opt=g_opt,
    )
    return state, loss, grads


def after_step(parts: ProgramParts, state: TrainState, real_uint8: jnp.ndarray, z: jnp.ndarray) -> TrainState:
    """The loss's post-step state update, if it has one (v2's BEGAN `after_training_step_hook`):
    D(real) and D(G(z)) on the step's real batch uint8 [B, H, W, C] and z [B, z_dim], recomputed
    with the updated weights, G and D in training mode (batch statistics of the batch). As v2's
    `update_k` run, it changes nothing but the loss state: no BN averages, and no spectral-norm u
    (v2's BEGAN D has none) are kept. v2 runs it once per training step: after a D update, or
    after the G update in the step that has one."""
    if not hasattr(parts.gan.loss, "after_step"):
        return state
    fake, _ = generate(parts, state.generator, z)
    d_params, d_rest = _split_collections(state.discriminator)
    real = to_model_range(real_uint8, parts.data_range)
    real_out, fake_out, _, _ = discriminate_pair(parts, d_params, d_rest, real, fake)
    return state.replace(loss_state=parts.gan.loss.after_step(real_out, fake_out, state.loss_state))


def group_start(parts: ProgramParts, state: TrainState, real_batches: jnp.ndarray, rng: jax.Array,
                real_labels=None) -> tuple[TrainState, dict]:
    """A group's first D update and its G update, which share z (the paper's training step with
    `(step - 1) % disc_iters == 0`), on slot 0; the first call of `run_group`.

    real_batches: uint8 [slots, B, H, W, C] as for `train_step`; rng: the trial's training key
    (this update: fold_in(rng, D updates done)); real_labels: int32 [slots, B] or None.
    Returns (state, metrics: that D update's, the G update's g_loss and g_grad_norm, and "finite")."""
    real_uint8 = real_batches[0]
    rng = jax.random.fold_in(rng, state.step)
    real_labels = labels_at(parts, real_labels, 0)
    z, penalty_key = latents(parts, rng)
    conditions = fake_conditions(parts, rng)
    images, pullback, scaled_batch_stats = shared_generator_forward(parts, state.generator, z, conditions)
    g_params, g_rest = _split_collections(state.generator)
    generator = {"params": g_params, **advance_averages(parts, g_rest, scaled_batch_stats)}
    state, d_metrics = discriminator_gradient_step(parts, state, real_uint8, jax.lax.stop_gradient(images), generator,
                                                   penalty_key, real_labels, conditions)
    state, g_loss, g_grads = generator_update(parts, state, images, pullback, scaled_batch_stats, penalty_key,
                                              conditions)
    state = after_step(parts, state, real_uint8, z)
    return state, _with_finite({**d_metrics, "g_loss": g_loss, "g_grad_norm": _global_norm(g_grads)})


def discriminator_update(parts: ProgramParts, state: TrainState, real_batches: jnp.ndarray, rng: jax.Array,
                         index: jnp.ndarray, real_labels=None) -> tuple[TrainState, dict]:
    """D update `index` (1 <= index < n_dis, int32 scalar) of a group, after its G update: on
    slot `index` of real_batches uint8 [slots, B, H, W, C], with a fresh z and its own G forward
    from key fold_in(rng, D updates done). real_labels: int32 [slots, B] or None.
    Returns (state, that update's metrics and "finite")."""
    real_uint8 = jax.lax.dynamic_index_in_dim(real_batches, index, keepdims=False)
    rng = jax.random.fold_in(rng, state.step)
    real_labels = labels_at(parts, real_labels, index)
    z, penalty_key = latents(parts, rng)
    conditions = fake_conditions(parts, rng)
    # G in training mode (the paper's code); its batch-norm statistics advance here too.
    fake, g_vars = generate(parts, state.generator, z, conditions)
    state, metrics = discriminator_gradient_step(parts, state, real_uint8, jax.lax.stop_gradient(fake), g_vars,
                                                 penalty_key, real_labels, conditions)
    return after_step(parts, state, real_uint8, z), _with_finite(metrics)


def train_step(parts: ProgramParts, state: TrainState, real_batches: jnp.ndarray, rng: jax.Array,
               real_labels=None) -> tuple[TrainState, dict]:
    """One group: D (z_0), G (z_0), then n_dis - 1 D updates (n_dis = state.discriminator_steps),
    as one pure function (one jit-compiled call: a `lax.while_loop` over the extra D updates).
    `run_group` computes the same group as separate calls where that is faster (`split_groups`).

    real_batches: uint8 [slots, batch, H, W, C]; the first n_dis are the group's fresh
        batches, one per D update; the rest are padding and never read.
    rng: the trial's training key; D update k (global index) uses fold_in(rng, k).
    real_labels: int32 [slots, batch], the real batches' class labels; a class-conditional
        program needs them, every other program takes None.
    Returns (state, metrics of the group: last D update's and the G update's, and "finite").
    """
    state, metrics = group_start(parts, state, real_batches, rng, real_labels)
    if parts.batch_slots > 1:

        def more(carry):
            index, carry_state, _ = carry
            return index < carry_state.discriminator_steps

        def body(carry):
            index, carry_state, _ = carry
            carry_state, d_metrics = discriminator_update(parts, carry_state, real_batches, rng, index, real_labels)
            return index + 1, carry_state, d_metrics

        first_d = {name: metrics[name] for name in metrics if name not in _G_METRICS}
        _, state, d_metrics = jax.lax.while_loop(more, body, (jnp.ones((), jnp.int32), state, first_d))
        metrics = _merge_group_metrics(metrics, d_metrics)
    return state, metrics


# ---------------------------------------------------------------------------- init, sample, the program
def init(parts: ProgramParts, rng: jax.Array) -> TrainState:
    """Initial weights (G's and D's variables, the architecture's shapes), optimizer states,
    step 0, the loss's initial state; the hyperparameters (lr, betas, lambda, n_dis) are
    placeholders until `with_hyperparameters` sets them (`init_state` does both)."""
    g_vars, d_vars = parts.gan.init(rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        generator=g_vars,
        discriminator=d_vars,
        generator_opt=parts.generator_optimizer.init(g_vars["params"]),
        discriminator_opt=parts.discriminator_optimizer.init(d_vars["params"]),
        loss_state=parts.gan.loss.init_state(),
        penalty_weight=jnp.zeros((), jnp.float32),
        discriminator_steps=jnp.ones((), jnp.int32),
    )


def sample(parts: ProgramParts, g_vars: dict, batch_index: int, batch_size: int, labels=None) -> jnp.ndarray:
    """Eval samples float32 [batch_size, H, W, C] in the data range: G with batch-norm moving
    averages, z fixed by (seed 42, batch_index), from the training z's distribution.

    labels: int [batch_size], the classes to generate (a class-conditional program; None:
    uniform from the batch's key). InfoGAN's codes are drawn from the batch's key.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(EVAL_LATENT_SEED), batch_index)
    z = sample_latents(key, (batch_size, parts.z_dim), parts.latent_distribution)
    condition = parts.condition
    if not condition.active:
        return parts.gan.generator.apply(g_vars, z, train=False)
    conditions = condition.draw(jax.random.fold_in(key, models.conditional.CONDITION_STREAM), batch_size)
    if condition.labelled and labels is not None:
        conditions = {"labels": jnp.asarray(labels, jnp.int32).reshape(batch_size)}
    z, kwargs = condition.generator_inputs(z, conditions)
    return parts.gan.generator.apply(g_vars, z, train=False, **kwargs)


def build_program(config: TrialConfig, slots: int | None = None) -> Program:
    """The (uncompiled) pure functions of a trial, bound to its parts; see `get_program` for the
    shared, jitted ones. slots: real-batch slots per train_step call (default `batch_slots(config)`)."""
    parts = build_parts(config, slots)
    return Program(
        gan=parts.gan,
        optimizer=parts.generator_optimizer,
        discriminator_optimizer=parts.discriminator_optimizer,
        batch_slots=parts.batch_slots,
        labelled=parts.condition.labelled,
        parts=parts,
        init=functools.partial(init, parts),
        train_step=functools.partial(train_step, parts),
        sample=functools.partial(sample, parts),
        group_start=functools.partial(group_start, parts),
        discriminator_update=functools.partial(discriminator_update, parts),
    )


# ---------------------------------------------------------------------------- how a group is called
def split_groups(config: TrialConfig) -> bool:
    """Whether `run_group` runs a group as separate calls: on CPU, for programs whose layers are
    per-op-overhead bound, judged by D's 3x3 convolution at half resolution with 128 * width
    channels (the layers' own threshold, models.layers.use_fast_path). Measured faster on CPU at
    tiny shapes (8x8, width 1/8), slower at 32x32 (width 1/2 and full width), where the one call
    wins. Off CPU (unmeasured) the one call, which needs no host round trip per D update."""
    if jax.default_backend() != "cpu":
        return False
    channels = max(1, int(128 * config.width_multiplier))
    return not models.layers.use_fast_path(config.batch_size, (config.image_size // 2) ** 2, 3, channels, channels)


def run_group(program: Program, state: TrainState, real_batches: jnp.ndarray, rng: jax.Array,
              discriminator_steps: int, real_labels=None) -> tuple[TrainState, dict]:
    """One group, the same updates as `program.train_step`; where `program.split_group`
    (`split_groups`) as 1 + (n_dis - 1) calls from the host (`group_start`, then
    `discriminator_update` for index 1 .. n_dis - 1), else as that one call.

    Why split: on XLA:CPU at tiny shapes a D update inside the `lax.while_loop` was measured
    slower than the same update run as a call of its own, by far more than a host dispatch
    costs. The two agree to float32 rounding, not bit for bit (XLA fuses the loop body differently).
    discriminator_steps: n_dis, the state's (the host knows it; reading the state's would sync).
    """
    labels = () if real_labels is None else (real_labels,)
    if not program.split_group:
        return program.train_step(state, real_batches, rng, *labels)
    state, metrics = program.group_start(state, real_batches, rng, *labels)
    if discriminator_steps > 1:
        for index in range(1, discriminator_steps):
            state, d_metrics = program.discriminator_update(state, real_batches, rng, np.int32(index), *labels)
        metrics = _merge_group_metrics(metrics, d_metrics)
    return state, metrics


@functools.lru_cache(maxsize=16)
def _cached_program(key: tuple) -> Program:
    fields = dict(key)
    slots = fields.pop("batch_slots")
    config = TrialConfig.from_dict(fields)
    program = build_program(config, slots)
    return dataclasses.replace(
        program,
        # Jitted init compiles once (then JAX's persistent cache holds it); eager init
        # would compile every primitive separately, in every process.
        init=jax.jit(program.init),
        # Donating the state lets XLA update parameters and optimizer moments in place.
        train_step=jax.jit(program.train_step, donate_argnums=0),
        group_start=jax.jit(program.group_start, donate_argnums=0),
        discriminator_update=jax.jit(program.discriminator_update, donate_argnums=0),
        sample=jax.jit(program.sample, static_argnums=(1, 2)),
        split_group=split_groups(config),
    )


def get_program(config: TrialConfig) -> Program:
    """The jit-compiled program for this config, shared by every trial (in this process)
    with the same program key; across processes JAX's persistent cache shares it."""
    return _cached_program(program_key(config))


def with_hyperparameters(state: TrainState, config: TrialConfig) -> TrainState:
    """Sets the traced hyperparameters (lr, betas or D's SGD momentum, lambda) of `config` into the state."""
    return state.replace(
        generator_opt=_set_hyperparams(state.generator_opt, config.learning_rate, config.beta1, config.beta2),
        discriminator_opt=_set_hyperparams(
            state.discriminator_opt, config.effective_discriminator_learning_rate, config.beta1, config.beta2,
            config.discriminator_sgd_momentum,
        ),
        penalty_weight=jnp.asarray(config.penalty_weight, jnp.float32),
        discriminator_steps=jnp.asarray(config.discriminator_steps, jnp.int32),
    )


def init_state(program: Program, config: TrialConfig, rng: jax.Array) -> TrainState:
    return with_hyperparameters(program.init(rng), config)
