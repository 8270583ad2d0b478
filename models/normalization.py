"""Discriminator normalizations (spec §4): none, batch, layer, spectral.

`NORMALIZATIONS` maps each public name to a `DiscriminatorNormalization`: whether D's
convolutions/linears are spectrally normalized, and which activation normalization (if
any) sits before D's nonlinearities. G always uses batch norm (not selected here).
compare_gan's "weight_norm" is accepted by its configs but no architecture calls it
(spec §4), so it is not offered.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.registry import Registry

SPECTRAL_EPSILON = 1e-12  # ops.spectral_norm's l2-normalisation epsilon
D_BATCH_NORM_MOMENTUM = 0.9  # tf.contrib batch_norm decay 0.9
D_BATCH_NORM_EPSILON = 1e-5
LAYER_NORM_EPSILON = 1e-12  # tf.contrib.layers.layer_norm default


@dataclasses.dataclass(frozen=True)
class DiscriminatorNormalization:
    name: str
    spectral: bool  # divide every D kernel by its spectral norm
    activation_norm: str | None  # "batch" | "layer" | None


NORMALIZATIONS: Registry[DiscriminatorNormalization] = Registry("normalization")
for _name, _spectral, _activation in (
    ("none", False, None),
    ("batch", False, "batch"),
    ("layer", False, "layer"),
    ("spectral", True, None),
):
    NORMALIZATIONS.add(_name, DiscriminatorNormalization(_name, _spectral, _activation))


def _l2_normalize(x: jnp.ndarray) -> jnp.ndarray:
    """compare_gan ops `_l2normalize`: x / (||x|| + 1e-12)."""
    return x / (jnp.sqrt(jnp.sum(x * x)) + SPECTRAL_EPSILON)


def spectral_normalize(module: nn.Module, kernel: jnp.ndarray, train: bool) -> jnp.ndarray:
    """W / sigma(W) of compare_gan v2 `ops.spectral_norm` (Miyato et al. 2018, Alg. 1).

    The kernel is reshaped to W [k*k*c_in (or features_in), c_out]. A persistent u
    [rows, 1] ~ N(0, 1) lives in the "spectral" collection under the calling module.
    In train mode one power iteration runs per call: v = l2norm(W^T u), u = l2norm(W v),
    and u is stored. sigma = u^T W v with u, v under stop-gradient. In eval mode u is not
    updated: v = l2norm(W^T u) from the stored u, sigma = u^T W v.
    l2norm(x) = x / (||x|| + 1e-12).
    """
    matrix = kernel.reshape(-1, kernel.shape[-1])
    u_var = module.variable(
        "spectral", "u", lambda: jax.random.normal(module.make_rng("params"), (matrix.shape[0], 1), jnp.float32)
    )
    u = u_var.value
    v = _l2_normalize(matrix.T @ u)
    if train and not module.is_initializing():
        u = _l2_normalize(matrix @ v)
        u_var.value = u
    u = jax.lax.stop_gradient(u)
    v = jax.lax.stop_gradient(v)
    sigma = (u.T @ matrix @ v)[0, 0]
    return kernel / sigma


class LayerNorm(nn.Module):
    """tf.contrib.layers.layer_norm on [batch, h, w, c]: each example normalized over
    (h, w, c) jointly, learnable per-channel scale and offset, variance epsilon 1e-12."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nn.LayerNorm(
            epsilon=LAYER_NORM_EPSILON, reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1,
            use_fast_variance=False,
        )(x)


def activation_norm(kind: str | None, x: jnp.ndarray, train: bool, name: str) -> jnp.ndarray:
    """The D activation normalization `kind` (None, "batch", "layer") applied to x, created
    inside the current compact module under `name`."""
    if kind is None:
        return x
    if kind == "batch":
        return nn.BatchNorm(
            use_running_average=not train, momentum=D_BATCH_NORM_MOMENTUM, epsilon=D_BATCH_NORM_EPSILON,
            use_fast_variance=False, name=name,
        )(x)
    if kind == "layer":
        return LayerNorm(name=name)(x)
    raise ValueError(f"activation normalization {kind!r} is not allowed; choose batch, layer or None")
