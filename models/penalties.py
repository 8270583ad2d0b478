"""Discriminator penalties (spec §3); the train loop adds lambda * penalty to L_D only.

A penalty is called as `penalty(d_fn, d_params, real, fake, rng) -> scalar`, where
d_fn(x [batch, h, w, c]) -> [batch] applies D in train mode with d_params closed over
(so gradients of the penalty reach d_params), and offers `project(d_params) -> d_params`,
applied after each D update (identity except classic WGAN weight clipping).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from models.registry import Registry

SLOPE_EPSILON = 1e-4  # inside the sqrt of the gradient norm (wgangp_penalty, dragan_penalty)
PENALTIES: Registry[type] = Registry("penalty")


def _gradient_slope_penalty(d_fn, points: jnp.ndarray) -> jnp.ndarray:
    """mean_b (sqrt(sum_{h,w,c} (dD(x_b)/dx_b)^2 + 1e-4) - 1)^2 at points [batch, h, w, c].
    D's outputs per example depend on the batch (BN), so the gradient of the sum of
    outputs is used, exactly as tf.gradients(logits, x)."""
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(points)
    slopes = jnp.sqrt(jnp.sum(grads**2, axis=tuple(range(1, grads.ndim))) + SLOPE_EPSILON)
    return jnp.mean((slopes - 1.0) ** 2)


class _NoProjection:
    def project(self, d_params):
        return d_params


@PENALTIES.register("none")
class NoPenalty(_NoProjection):
    def __call__(self, d_fn, d_params, real, fake, rng):
        return jnp.zeros((), jnp.float32)


@PENALTIES.register("gp")
class GradientPenalty(_NoProjection):
    """WGAN-GP (Gulrajani et al. 2017; v2 wgangp_penalty): alpha ~ U[0, 1] per example,
    x_hat = real + alpha (fake - real), penalty = mean (||grad D(x_hat)|| - 1)^2."""

    def __call__(self, d_fn, d_params, real, fake, rng):
        alpha = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
        return _gradient_slope_penalty(d_fn, real + alpha * (fake - real))


@PENALTIES.register("dragan")
@dataclasses.dataclass(frozen=True)
class DraganPenalty(_NoProjection):
    """DRAGAN (Kodali et al. 2017; v2 dragan_penalty): std = standard deviation of the whole
    real batch (one scalar), x_noisy = clip(real + std (U[0, 1) - 0.5), data range),
    penalty = mean (||grad D(x_noisy)|| - 1)^2. Only real data is perturbed."""

    data_range: tuple[float, float] = (0.0, 1.0)

    def __call__(self, d_fn, d_params, real, fake, rng):
        std = jnp.std(real)
        noise = jax.random.uniform(rng, real.shape, real.dtype) - 0.5
        noisy = jnp.clip(real + std * noise, self.data_range[0], self.data_range[1])
        return _gradient_slope_penalty(d_fn, noisy)


def weight_kernels(d_params) -> list[jnp.ndarray]:
    """D's weight matrices and conv kernels: every parameter leaf named "kernel" (biases,
    BN/LN scales and offsets are not; SN's u lives outside "params"), sorted by path."""
    flat = jax.tree_util.tree_flatten_with_path(d_params)[0]
    kernels = []
    for path, leaf in flat:
        last = path[-1]
        if getattr(last, "key", None) == "kernel":
            kernels.append((jax.tree_util.keystr(path), leaf))
    return [leaf for _, leaf in sorted(kernels, key=lambda item: item[0])]


@PENALTIES.register("l2")
class L2Penalty(_NoProjection):
    """v2 l2_penalty: mean over D's weight layers of tf.nn.l2_loss(W) = 0.5 sum W^2 (raw
    kernels when spectrally normalized; biases and normalization parameters excluded)."""

    def __call__(self, d_fn, d_params, real, fake, rng):
        kernels = weight_kernels(d_params)
        return jnp.mean(jnp.stack([0.5 * jnp.sum(w**2) for w in kernels]))


@PENALTIES.register("clip")
@dataclasses.dataclass(frozen=True)
class WeightClipping:
    """Classic WGAN (Arjovsky et al. 2017): no loss term (value 0); after every D update
    `project` clips every D parameter (kernels, biases and normalization scales/offsets, as
    WGAN's reference code clamps all critic parameters) to [-clip, clip]."""

    clip: float = 0.01

    def __call__(self, d_fn, d_params, real, fake, rng):
        return jnp.zeros((), jnp.float32)

    def project(self, d_params):
        return jax.tree_util.tree_map(lambda w: jnp.clip(w, -self.clip, self.clip), d_params)


def make_penalty(config, data_range: tuple[float, float]):
    """The penalty object named by config.penalty."""
    cls = PENALTIES.get(config.penalty)
    if cls is DraganPenalty:
        return DraganPenalty(data_range=tuple(data_range))
    if cls is WeightClipping:
        return WeightClipping(clip=float(config.weight_clip))
    return cls()
