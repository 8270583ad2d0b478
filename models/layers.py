"""Convolution building blocks shared by the architectures (NHWC, HWIO kernels, float32).

Initialisers follow compare_gan v2 `gans/ops.py` (spec §0): linear and transposed-conv
weights N(0, 0.02), conv weights truncated N(0, 0.02) (the SNDCGAN D uses plain N(0, 0.02)),
zero biases. Every D layer takes `spectral=True` to divide its kernel by the power-iteration
estimate of its largest singular value (`models.normalization.spectral_normalize`).

Upsampling layers are computed as sub-pixel convolutions: XLA:CPU's lhs-dilated
(transposed) convolution has a 10-56x slower backward pass (spec/stack.md), while the
equivalent stride-1 convolution at the low resolution followed by depth-to-space is fast.
Both keep the paper's parameterisation; the kernel taps are rearranged inside.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from models.normalization import spectral_normalize

Initializer = Callable[..., jnp.ndarray]

normal_init = nn.initializers.normal(stddev=0.02)
# TF truncated_normal(stddev=0.02): cut at two standard deviations of the untruncated normal.
truncated_normal_init = nn.initializers.truncated_normal(stddev=0.02)
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def scaled_channels(channels: int, width_multiplier: float) -> int:
    """The paper's channel count times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width_multiplier)))


class Dense(nn.Module):
    """y = x W + b with W ~ N(0, 0.02); x [batch, features_in] -> [batch, features]."""

    features: int
    spectral: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        kernel = self.param("kernel", normal_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.spectral:
            kernel = spectral_normalize(self, kernel, train)
        return x @ kernel + bias


class Conv(nn.Module):
    """k x k convolution, SAME padding; x [batch, height, width, c_in] ->
    [batch, ceil(height / stride), ceil(width / stride), features]."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    spectral: bool = False
    kernel_init: Initializer = truncated_normal_init

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.spectral:
            kernel = spectral_normalize(self, kernel, train)
        y = lax.conv_general_dilated(
            x, kernel, (self.stride, self.stride), "SAME", dimension_numbers=_DIMENSIONS
        )
        return y + bias


def depth_to_space(y: jnp.ndarray, channels: int) -> jnp.ndarray:
    """[batch, h, w, (2, 2, channels)] -> [batch, 2h, 2w, channels]; channel block
    (row phase, column phase) lands at (2i + row phase, 2j + column phase)."""
    batch, height, width, _ = y.shape
    y = y.reshape(batch, height, width, 2, 2, channels)
    y = y.transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(batch, 2 * height, 2 * width, channels)


def _phase_kernel(kernel: jnp.ndarray, taps: tuple[tuple[int, ...], tuple[int, ...]]) -> jnp.ndarray:
    """Rearranges a [k, k, c_in, c_out] kernel into a [t, t, c_in, 4 c_out] sub-pixel kernel.

    taps[phase][offset] is the kernel row (and column) feeding output phase `phase` from
    input offset `offset`; index k means "no tap" (a zero row).
    """
    k, _, c_in, c_out = kernel.shape
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index k is the zero tap
    index = jnp.asarray(taps)  # [2 phases, t offsets]
    rows = padded[index]  # [2 (row phase), t, k + 1, c_in, c_out]
    both = rows[:, :, index]  # [2 (row phase), t (row offset), 2 (col phase), t (col offset), c_in, c_out]
    both = both.transpose(1, 3, 4, 0, 2, 5)  # [t, t, c_in, row phase, col phase, c_out]
    t = index.shape[1]
    return both.reshape(t, t, c_in, 4 * c_out)


# Transposed conv, kernel 4, stride 2, SAME (lax.conv_transpose, pads (2, 2) on the
# zero-dilated input): out[2m] = x[m-1] k[0] + x[m] k[2]; out[2m+1] = x[m] k[1] + x[m+1] k[3].
_DECONV4_TAPS = ((0, 2, 4), (4, 1, 3))  # input offsets -1, 0, +1
# Zero-insertion unpool then 3x3 SAME conv: out[2m] = x[m] k[1]; out[2m+1] = x[m] k[0] + x[m+1] k[2].
_UNPOOL_CONV3_TAPS = ((1, 3), (0, 2))  # input offsets 0, +1


def deconv4x4_stride2(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Exactly `lax.conv_transpose(x, kernel, (2, 2), "SAME")` (NHWC, HWIO, TF deconv2d
    output size 2x), as a 3x3 stride-1 conv to 4 c_out channels + depth-to-space.

    x [batch, h, w, c_in], kernel [4, 4, c_in, c_out] -> [batch, 2h, 2w, c_out].
    """
    c_out = kernel.shape[-1]
    y = lax.conv_general_dilated(
        x, _phase_kernel(kernel, _DECONV4_TAPS), (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS
    )
    return depth_to_space(y, c_out)


def unpool(x: jnp.ndarray) -> jnp.ndarray:
    """Zero-insertion 2x upsampling of compare_gan's `unpool`: out[2i, 2j] = x[i, j], other
    three positions 0. [batch, h, w, c] -> [batch, 2h, 2w, c]. (Reference; the networks use
    `unpool_conv3x3`, which never materialises the zeros.)"""
    zeros = jnp.zeros_like(x)
    y = jnp.stack([jnp.stack([x, zeros], axis=3), jnp.stack([zeros, zeros], axis=3)], axis=3)
    # y [batch, h, w, 2 (row phase), 2 (col phase), c]
    batch, height, width, channels = x.shape
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height, 2 * width, channels)


def unpool_conv3x3(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Exactly conv3x3_SAME(unpool(x), kernel) as a 2x2 stride-1 conv (padding 0 before,
    1 after) to 4 c_out channels + depth-to-space: 2.25x fewer multiplies, no zeros.

    x [batch, h, w, c_in], kernel [3, 3, c_in, c_out] -> [batch, 2h, 2w, c_out].
    """
    c_out = kernel.shape[-1]
    y = lax.conv_general_dilated(
        x, _phase_kernel(kernel, _UNPOOL_CONV3_TAPS), (1, 1), ((0, 1), (0, 1)), dimension_numbers=_DIMENSIONS
    )
    return depth_to_space(y, c_out)


class Deconv4x4(nn.Module):
    """TF `deconv2d` 4x4 stride 2 (SAME): [batch, h, w, c_in] -> [batch, 2h, 2w, features].
    Kernel [4, 4, c_in, features] ~ N(0, 0.02), bias 0; computed as a sub-pixel conv."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", normal_init, (4, 4, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return deconv4x4_stride2(x, kernel) + bias


class UpConv3x3(nn.Module):
    """compare_gan's `get_conv(..., "up")`: zero-insertion unpool then 3x3 SAME conv
    (truncated N(0, 0.02) kernel [3, 3, c_in, features]); [b, h, w, c_in] -> [b, 2h, 2w, features]."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", truncated_normal_init, (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return unpool_conv3x3(x, kernel) + bias


def avg_pool2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 average pooling, stride 2 (even sizes): [b, h, w, c] -> [b, h/2, w/2, c]."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def lrelu(x: jnp.ndarray, leak: float = 0.2) -> jnp.ndarray:
    """compare_gan `lrelu`: max(x, leak x)."""
    return jnp.maximum(x, leak * x)
