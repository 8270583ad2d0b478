"""ResNet19 ("resnet5_arch", 128x128) and ResNet-CIFAR (32x32) of compare_gan v2
`gans/resnet_architecture.py` (spec §1c, §1d), with the study-5 ablation switches.

Residual block (pre-activation, 3x3 SAME convs, truncated N(0, 0.02) kernels):
  main = [norm] -> ReLU -> conv1 -> [norm] -> ReLU -> conv2;  out = main + shortcut.
G block ("up"): conv1 = zero-insertion unpool + conv3x3; shortcut = unpool + conv3x3;
  norm = BN (momentum 0.9, epsilon 1e-5 or config.generator_bn_epsilon).
D block ("down" or "none"): conv2 = conv3x3 then 2x2 average pool; shortcut = conv3x3
  (then pool); norm = the D normalization (BN/LN/none; SN divides every conv and the
  final linear). B0 normalizes and ReLUs the raw image too.
G: linear z -> 4*4*c0 (no norm) -> up-blocks -> BN -> ReLU -> conv3x3 -> C -> sigmoid.
D: blocks -> ReLU -> global mean pool over (H, W) -> linear -> logits [batch].

Image sizes (our rule; the paper ran 128 for ResNet19 and 32 for ResNet-CIFAR): the
blocks nearest the bottleneck are dropped for smaller images, so the layers touching the
image keep the paper's channel counts.
  ResNet19, H = W = 2^n, 8 <= H <= 128: G keeps its last log2(H/4) up-blocks (seed 4x4),
    D its first log2(H/2) down-blocks (final map 2x2).
  ResNet-CIFAR, H = W = 2^n, 16 <= H <= 128: G has log2(H/4) up-blocks (256 channels),
    D has log2(H/8) down-blocks then the two unpooled blocks (final map 8x8; paper: 32 ->
    2 down-blocks).

Ablations (study.md study 5; the paper's code has none, so these are our reading):
  resnet_d_shortcut="identity": D shortcut is x (then pooled); where c_in != c_out a
    learned 1x1 conv (SNGAN's "conv only when needed") maps the channels.
  resnet_d_cin: a D block's hidden conv (conv1) outputs c_in channels instead of c_out.
  resnet_d_opt: SNGAN's optimized first D block: conv3x3 (c_out) -> [norm] -> ReLU ->
    conv3x3 (c_out) -> pool, no norm/ReLU on the image; shortcut avgpool -> conv1x1.
  resnet_d_pooling="sum": D head sums over positions instead of the mean.
  resnet_tanh: G ends in tanh, images and D inputs in [-1, 1].
  generator_bn_epsilon (EPS): G BN epsilon 2e-5.

minibatch_stddev_group_size > 0 (a training trick, not the paper's): ProGAN's minibatch
standard-deviation map (models.layers.minibatch_stddev) is concatenated to the input of
D's last block, whose c_in grows by 1 (with the identity shortcut its 1x1 conv then maps
the channels).
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax.numpy as jnp

from models.conditional import discriminator_head, generator_norm
from models.layers import Conv, Dense, UpConv3x3, avg_pool2x2, minibatch_stddev, scaled_channels
from models.normalization import activation_norm

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class ResNetLayout:
    """Channel plan: G seed channels, G blocks (c_in, c_out), D blocks (c_out, downsample)."""

    g_seed: int
    g_blocks: tuple[tuple[int, int], ...]
    d_blocks: tuple[tuple[int, bool], ...]


_RESNET19_G = ((512, 512), (512, 256), (256, 256), (256, 128), (128, 64))
_RESNET19_D = (64, 128, 256, 256, 512, 512)


def _log2_size(name: str, image_size: int, low: int, high: int) -> int:
    n = int(round(math.log2(image_size))) if image_size > 0 else 0
    if 2**n != image_size or not low <= image_size <= high:
        raise ValueError(
            f"image_size={image_size} is not allowed for architecture {name!r}; "
            f"use a power of two in [{low}, {high}] (paper: {'128' if name == 'resnet19' else '32'})"
        )
    return n


def resnet19_layout(image_size: int) -> ResNetLayout:
    n = _log2_size("resnet19", image_size, 8, 128)
    g_blocks = _RESNET19_G[len(_RESNET19_G) - (n - 2):]
    d_blocks = tuple((c, True) for c in _RESNET19_D[: n - 1])
    return ResNetLayout(g_seed=g_blocks[0][0], g_blocks=g_blocks, d_blocks=d_blocks)


def resnet_cifar_layout(image_size: int) -> ResNetLayout:
    n = _log2_size("resnet_cifar", image_size, 16, 128)
    return ResNetLayout(
        g_seed=256,
        g_blocks=((256, 256),) * (n - 2),
        d_blocks=((128, True),) * (n - 3) + ((128, False),) * 2,
    )


class ResNetGenerator(nn.Module):
    """z [batch, z_dim] -> images [batch, H, W, C] in output_range (sigmoid or tanh)."""

    batch_norm_momentum = BN_MOMENTUM  # every BN of G; the train step advances their averages
    layout: ResNetLayout
    image_shape: tuple[int, int, int]
    width_multiplier: float = 1.0
    bn_epsilon: float = BN_EPSILON
    tanh_output: bool = False
    num_classes: int = 0  # > 0: class-conditional BN (models.conditional), labels [batch] required

    @nn.compact
    def __call__(self, z: jnp.ndarray, train: bool = False, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        ch = lambda n: scaled_channels(n, self.width_multiplier)  # noqa: E731
        bn = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=BN_MOMENTUM, epsilon=self.bn_epsilon,
            use_fast_variance=False, name=name,
        )
        if self.num_classes:
            bn = generator_norm(self.num_classes, labels, train, BN_MOMENTUM, self.bn_epsilon)
        seed = ch(self.layout.g_seed)
        x = Dense(4 * 4 * seed, name="linear")(z).reshape(z.shape[0], 4, 4, seed)
        for i, (_, c_out) in enumerate(self.layout.g_blocks):
            h = nn.relu(bn(f"block{i}_bn1")(x))
            h = UpConv3x3(ch(c_out), name=f"block{i}_conv1")(h)
            h = nn.relu(bn(f"block{i}_bn2")(h))
            h = Conv(ch(c_out), 3, 1, name=f"block{i}_conv2")(h)
            x = h + UpConv3x3(ch(c_out), name=f"block{i}_shortcut")(x)
        x = nn.relu(bn("final_bn")(x))
        x = Conv(self.image_shape[-1], 3, 1, name="final_conv")(x)
        return jnp.tanh(x) if self.tanh_output else nn.sigmoid(x)


class ResNetDiscriminator(nn.Module):
    """x [batch, H, W, C] (in the data range; not rescaled) -> logits [batch] (or
    [batch, out_features] for the BEGAN encoder)."""

    layout: ResNetLayout
    width_multiplier: float = 1.0
    spectral: bool = False
    activation_norm: str | None = None
    identity_shortcut: bool = False
    hidden_c_in: bool = False  # CIN
    optimized_first_block: bool = False  # OPT
    sum_pooling: bool = False  # SUM
    out_features: int = 1
    minibatch_stddev_group_size: int = 0  # 0: off
    conditioning: str = "none"  # models.conditional.CONDITIONINGS
    num_classes: int = 0
    aux_outputs: int = 0  # ACGAN classifier / InfoGAN Q head width

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        for i, (c_out_paper, down) in enumerate(self.layout.d_blocks):
            if self.minibatch_stddev_group_size and i == len(self.layout.d_blocks) - 1:
                x = minibatch_stddev(x, self.minibatch_stddev_group_size)
            c_in = x.shape[-1]
            c_out = scaled_channels(c_out_paper, self.width_multiplier)
            conv = lambda features, name, k=3: Conv(features, k, 1, self.spectral, name=f"block{i}_{name}")  # noqa: E731
            pool = avg_pool2x2 if down else (lambda t: t)
            norm = lambda t, name: activation_norm(self.activation_norm, t, train, f"block{i}_{name}")  # noqa: E731
            if i == 0 and self.optimized_first_block:
                h = conv(c_out, "conv1")(x, train)
                h = nn.relu(norm(h, "norm2"))
                h = pool(conv(c_out, "conv2")(h, train))
                x = h + conv(c_out, "shortcut", 1)(pool(x), train)
                continue
            hidden = c_in if self.hidden_c_in else c_out
            h = nn.relu(norm(x, "norm1"))
            h = conv(hidden, "conv1")(h, train)
            h = nn.relu(norm(h, "norm2"))
            h = pool(conv(c_out, "conv2")(h, train))
            if not self.identity_shortcut:
                shortcut = pool(conv(c_out, "shortcut")(x, train))
            elif c_in == c_out:
                shortcut = pool(x)
            else:
                shortcut = pool(conv(c_out, "shortcut", 1)(x, train))
            x = h + shortcut
        x = nn.relu(x)
        x = jnp.sum(x, axis=(1, 2)) if self.sum_pooling else jnp.mean(x, axis=(1, 2))
        if self.conditioning != "none" or self.aux_outputs:
            return discriminator_head(self, x, labels, train, spectral=self.spectral, conditioning=self.conditioning,
                                      num_classes=self.num_classes, aux_outputs=self.aux_outputs)
        out = Dense(self.out_features, self.spectral, name="linear")(x, train)
        return out[:, 0] if self.out_features == 1 else out
