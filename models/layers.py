"""Convolution building blocks shared by the architectures (NHWC, HWIO kernels, float32).

Initialisers follow compare_gan v2 `gans/ops.py` (spec §0): linear and transposed-conv
weights N(0, 0.02), conv weights truncated N(0, 0.02) (the SNDCGAN D uses plain N(0, 0.02)),
zero biases. Every D layer takes `spectral=True` to divide its kernel by the power-iteration
estimate of its largest singular value (`models.normalization.spectral_normalize`).

The layers keep the paper's parameterisation but compute it the way XLA:CPU runs fast
(benchmarks/train_step.py measures the step against PyTorch): upsampling layers as four
phase convolutions at the low resolution with a hand-written adjoint (`upsample_conv`; the
lhs-dilated transposed convolution's backward is 10-56x slower, spec/stack.md), and every
convolution's kernel gradient as one matrix product per tap (`conv2d`). Values equal the
textbook ops (tests/test_models_layers.py, incl. gradients and double backward).

Which form runs is chosen per layer shape and backend (`use_fast_path`): the rewrites pay
only where a convolution is large enough for its arithmetic to matter. At the tiny scale's
shapes (8x8 images, width 1/8: a few MFLOP per layer) a step is bound by per-op overhead,
and the rewrites' extra ops (4 phase convolutions, k*k tap matmuls) cost more than they
save; there, and on GPU/TPU (the rewrites target XLA:CPU's weak kernels; cuDNN runs the
textbook forms well), the layers use the textbook `lax` ops and autodiff.
"""
from __future__ import annotations

import functools
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
        padding = tuple(same_padding(size, k, self.stride) for size in x.shape[1:3])
        out_positions = -(-x.shape[1] // self.stride) * -(-x.shape[2] // self.stride)
        fast = use_fast_path(x.shape[0], out_positions, k, x.shape[-1], self.features)
        return (conv2d if fast else _conv)(x, kernel, self.stride, padding) + bias


# Multiply-adds of one convolution call (batch x output positions x k*k x c_in x c_out) from
# which the XLA:CPU rewrites run. Forward + backward of one layer, 2-core CPU, batch 64,
# rewrites vs textbook: 3x3 16->16 at 4x4 (2.4 M) 4.6 vs 2.6 ms; 4x4/2 8->16 at 8x8 (2.1 M)
# 4.0 vs 2.6; 3x3 16->16 at 8x8 (9.4 M) 16.0 vs 16.0; 3x3 32->32 at 8x8 (38 M) 66 vs 62;
# 4x4/2 16->32 at 16x16 (34 M) 54 vs 65; 3x3 3->32 at 32x32 (57 M) 97 vs 288; 3x3 32->32 at
# 16x16 (151 M) 140 vs 276. Every layer of the tiny scale is <= 2.4 M; the small scale's >= 34 M.
FAST_PATH_MIN_MACS = 16_000_000


def use_fast_path(batch: int, out_positions: int, kernel_size: int, c_in: int, c_out: int) -> bool:
    """Whether a convolution of this shape runs as the XLA:CPU rewrites (`conv2d`,
    `upsample_conv`) rather than the textbook `lax` ops: on CPU, from FAST_PATH_MIN_MACS."""
    macs = batch * out_positions * kernel_size * kernel_size * c_in * c_out
    return jax.default_backend() == "cpu" and macs >= FAST_PATH_MIN_MACS


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial dimension: output ceil(size / stride)."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def kernel_gradient(x: jnp.ndarray, cotangent: jnp.ndarray, kernel_size: int, stride: int,
                    padding: tuple[tuple[int, int], tuple[int, int]]) -> jnp.ndarray:
    """d<cotangent, conv(x, kernel)>/d kernel as one matrix product per kernel tap.

    x [batch, h, w, c_in], cotangent [batch, h_out, w_out, c_out] -> [k, k, c_in, c_out]:
    grad[i, j] = sum over (batch, p, q) of x_padded[:, stride p + i, stride q + j]^T cotangent[:, p, q].
    XLA:CPU's own kernel-gradient convolution runs these shapes at 13-30 GFLOP/s, the tap
    matmuls at ~60 (2-core CPU, batch 64: 194 -> 102 ms for 3x3 128->128 at 16x16; the
    whole step is measured by benchmarks/train_step.py).
    """
    batch, h_out, w_out, c_out = cotangent.shape
    padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    flat_cotangent = cotangent.reshape(-1, c_out)
    taps = []
    for i in range(kernel_size):
        for j in range(kernel_size):
            window = lax.slice(
                padded, (0, i, j, 0),
                (batch, i + stride * (h_out - 1) + 1, j + stride * (w_out - 1) + 1, x.shape[-1]),
                (1, stride, stride, 1),
            )
            taps.append(window.reshape(-1, x.shape[-1]).T @ flat_cotangent)
    return jnp.stack(taps).reshape(kernel_size, kernel_size, x.shape[-1], c_out)


def _conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int,
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jnp.ndarray:
    """Cross-correlation, x [batch, h, w, c_in], kernel [k, k, c_in, c_out] -> [batch, h_out, w_out, c_out].

    Exactly `lax.conv_general_dilated`; its gradients are computed the fast way on XLA:CPU
    (`kernel_gradient`, `_input_gradient`). Differentiable twice (the gradient penalties'
    double backward).
    """
    return _conv(x, kernel, stride, padding)


def _conv2d_forward(x, kernel, stride, padding):
    return _conv(x, kernel, stride, padding), (x, kernel)


def _input_gradient(x_shape, kernel, stride, padding, cotangent):
    """d<cotangent, conv(x, kernel)>/dx written as forward convolutions.

    Autodiff's transpose of a convolution (reversed, I/O-swapped kernel; lhs dilation for
    stride 2) runs on XLA:CPU's slow generic path inside a while loop (the n_dis > 1 D
    updates: 5.8 s instead of 2.8 s per full-width D update); these forms stay fast.
    """
    k = kernel.shape[0]
    adjoint = _flip_transpose(kernel)
    # Through conv2d / upsample_conv themselves, so that differentiating this gradient again
    # (the penalties' double backward, also inside the while loop) stays on the fast path.
    if stride == 1:
        return conv2d(cotangent, adjoint, 1, tuple((k - 1 - lo, k - 1 - hi) for lo, hi in padding))
    if stride == 2 and k == 4 and padding == _ADJOINT_PADDING and x_shape[1] % 2 == 0 and x_shape[2] % 2 == 0:
        # The adjoint of a 4x4 stride-2 convolution with padding 1 is the transposed conv.
        return upsample_conv(cotangent, adjoint, _DECONV4_PHASES)
    _, input_vjp = jax.vjp(lambda inputs: _conv(inputs, kernel, stride, padding), jnp.zeros(x_shape, cotangent.dtype))
    return input_vjp(cotangent)[0]


def _conv2d_backward(stride, padding, residuals, cotangent):
    x, kernel = residuals
    return (_input_gradient(x.shape, kernel, stride, padding, cotangent),
            kernel_gradient(x, cotangent, kernel.shape[0], stride, padding))


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


# Stride-2 upsampling convolutions as four phase convolutions at the low resolution. Output row
# 2m + phase reads input rows m + offset for the phase's (kernel tap, offset) pairs; the same
# holds for columns. Each phase is a small stride-1 convolution with only its real taps (the
# 3x3 sub-pixel form computes 2.25x the multiplies), and nothing runs at the zero-dilated size.
# Per phase: (kernel taps, (padding before, padding after)) of the low-resolution input.
# Transposed conv 4x4 stride 2 SAME (pads (2, 2) on the zero-dilated input):
# out[2m] = x[m-1] k[0] + x[m] k[2]; out[2m+1] = x[m] k[1] + x[m+1] k[3].
_DECONV4_PHASES = (((0, 2), (1, 0)), ((1, 3), (0, 1)))
# Zero-insertion unpool then 3x3 SAME conv: out[2m] = x[m] k[1]; out[2m+1] = x[m] k[0] + x[m+1] k[2].
_UNPOOL_CONV3_PHASES = (((1,), (0, 0)), ((0, 2), (0, 1)))


def _flip_transpose(kernel: jnp.ndarray) -> jnp.ndarray:
    """[k, k, a, b] -> [k, k, b, a], spatially reversed: the kernel of the adjoint convolution."""
    return kernel[::-1, ::-1].transpose(0, 1, 3, 2)


def _upsample_forward_value(x, kernel, phases):
    batch, height, width, _ = x.shape
    c_out = kernel.shape[-1]
    rows = []
    for row_taps, row_pad in phases:
        columns = []
        for column_taps, column_pad in phases:
            phase_kernel = kernel[jnp.asarray(row_taps)][:, jnp.asarray(column_taps)]
            columns.append(_conv(x, phase_kernel, 1, (row_pad, column_pad)))
        rows.append(jnp.stack(columns, axis=3))  # [batch, h, w, column phase, c_out]
    y = jnp.stack(rows, axis=2)  # [batch, h, row phase, w, column phase, c_out]
    return y.reshape(batch, 2 * height, 2 * width, c_out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def upsample_conv(x: jnp.ndarray, kernel: jnp.ndarray, phases: tuple) -> jnp.ndarray:
    """A stride-2 upsampling convolution (transposed conv, or unpool + conv) given by its phases.

    x [batch, h, w, c_in], kernel [k, k, c_in, c_out] -> [batch, 2h, 2w, c_out].
    Its adjoint in x is a stride-2 convolution (padding 1) with the flipped, transposed
    kernel, so the backward pass is two fast ordinary convolutions' worth of work (XLA:CPU's
    lhs-dilated convolution, the textbook form, has a 10-56x slower backward: spec/stack.md).
    """
    return _upsample_forward_value(x, kernel, phases)


def _upsample_forward(x, kernel, phases):
    return _upsample_forward_value(x, kernel, phases), (x, kernel)


_ADJOINT_PADDING = ((1, 1), (1, 1))


def _upsample_backward(phases, residuals, cotangent):
    x, kernel = residuals
    adjoint = _flip_transpose(kernel)
    input_grad = conv2d(cotangent, adjoint, 2, _ADJOINT_PADDING)
    # <cotangent, up(x, W)> = <conv(cotangent, adjoint(W)), x>: W's gradient is the adjoint
    # convolution's kernel gradient with x as its cotangent, flipped back.
    adjoint_grad = kernel_gradient(cotangent, x, kernel.shape[0], 2, _ADJOINT_PADDING)
    return input_grad, _flip_transpose(adjoint_grad)


upsample_conv.defvjp(_upsample_forward, _upsample_backward)


def deconv4x4_stride2(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Exactly `lax.conv_transpose(x, kernel, (2, 2), "SAME")` (NHWC, HWIO, TF deconv2d
    output size 2x). x [batch, h, w, c_in], kernel [4, 4, c_in, c_out] -> [batch, 2h, 2w, c_out]."""
    return upsample_conv(x, kernel, _DECONV4_PHASES)


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
    """Exactly conv3x3_SAME(unpool(x), kernel): 4x fewer multiplies than on the zeros.
    x [batch, h, w, c_in], kernel [3, 3, c_in, c_out] -> [batch, 2h, 2w, c_out]."""
    return upsample_conv(x, kernel, _UNPOOL_CONV3_PHASES)


class Deconv4x4(nn.Module):
    """TF `deconv2d` 4x4 stride 2 (SAME): [batch, h, w, c_in] -> [batch, 2h, 2w, features].
    Kernel [4, 4, c_in, features] ~ N(0, 0.02), bias 0; computed as a sub-pixel conv."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", normal_init, (4, 4, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        # Each output position of a stride-2 4x4 transposed conv reads 2x2 taps.
        if use_fast_path(x.shape[0], 4 * x.shape[1] * x.shape[2], 2, x.shape[-1], self.features):
            return deconv4x4_stride2(x, kernel) + bias
        return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_DIMENSIONS) + bias


class UpConv3x3(nn.Module):
    """compare_gan's `get_conv(..., "up")`: zero-insertion unpool then 3x3 SAME conv
    (truncated N(0, 0.02) kernel [3, 3, c_in, features]); [b, h, w, c_in] -> [b, 2h, 2w, features]."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", truncated_normal_init, (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if use_fast_path(x.shape[0], 4 * x.shape[1] * x.shape[2], 3, x.shape[-1], self.features):
            return unpool_conv3x3(x, kernel) + bias
        return _conv(unpool(x), kernel, 1, ((1, 1), (1, 1))) + bias


def avg_pool2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 average pooling, stride 2 (even sizes): [b, h, w, c] -> [b, h/2, w/2, c]."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def lrelu(x: jnp.ndarray, leak: float = 0.2) -> jnp.ndarray:
    """compare_gan `lrelu`: max(x, leak x)."""
    return jnp.maximum(x, leak * x)


MINIBATCH_STDDEV_EPSILON = 1e-8  # ProGAN's: inside the sqrt, so a group of identical examples has a finite gradient


def minibatch_stddev(x: jnp.ndarray, group_size: int) -> jnp.ndarray:
    """Minibatch standard deviation (Karras et al. 2018, ProGAN sec. 3, their `minibatch_stddev_layer`):
    x [N, H, W, C] -> [N, H, W, C + 1], the extra map constant per example.

    The batch is split into N / G groups of G = min(group_size, N) examples, example n in
    group n mod (N / G) (ProGAN's reshape [G, N / G, ...]); per group, the std over its G
    examples of every feature (h, w, c), s = sqrt(mean_g (x - mean_g x)^2 + 1e-8) (the biased
    variance), averaged over all H * W * C features, is the value of the new map for the
    group's examples. G must divide N (config: batch_size % minibatch_stddev_group_size == 0;
    init with a batch of 1 uses G = 1)."""
    n, h, w, c = x.shape
    group = min(int(group_size), n)
    if n % group:
        raise ValueError(f"minibatch_stddev: batch {n} is not a multiple of the group size {group}")
    y = x.reshape(group, n // group, h, w, c)
    y = y - jnp.mean(y, axis=0, keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + MINIBATCH_STDDEV_EPSILON)  # [N / G, H, W, C]
    feature = jnp.mean(std, axis=(1, 2, 3))  # [N / G]
    feature = jnp.tile(feature, group)  # example n -> its group n mod (N / G)
    return jnp.concatenate([x, jnp.broadcast_to(feature[:, None, None, None], (n, h, w, 1)).astype(x.dtype)], axis=-1)
