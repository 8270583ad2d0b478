"""SNDCGAN (Miyato et al. 2018) as compare_gan v2 `dcgan_architecture.sn_generator` /
`sn_discriminator` (spec §1a), at any image size that is a multiple of 8.

G: z [batch, z_dim] -> linear s8*s8*512 -> BN (on the flat tensor) -> ReLU -> reshape
[batch, s8, s8, 512] -> 3 x (deconv 4x4 stride 2 -> BN -> ReLU) with 256, 128, 64
channels -> 3x3 stride-1 layer to C channels -> (tanh + 1) / 2: images [batch, H, W, C] in
[0, 1]. s8 = H / 8. G's BN: momentum 0.9, epsilon 2e-5 (config.generator_bn_epsilon
overrides it). The final 3x3 stride-1 "deconv2d" of the paper's code is a convolution with a
spatially flipped kernel; its N(0, 0.02) init is symmetric, so a plain 3x3 conv is the same
model.

D: x in [0, 1] -> 2x - 1 -> conv3x3 64, conv4x4/2 128, conv3x3 128, conv4x4/2 256,
conv3x3 256, conv4x4/2 512, conv3x3 512 (each followed by lrelu 0.1) -> flatten -> linear
-> logits [batch]. All kernels N(0, 0.02). Spectral normalization (if selected) divides all
7 convs and the linear (8 weight layers). compare_gan v2's sn_discriminator has no batch
or layer norm (only SN or none), and v3's sndcgan has none either: no reference code places
them. Our choice, without a reference: batch/layer norm after every conv except the first
and before its lrelu, not after the linear (where the paper places BN/LN in the ResNet D:
before each nonlinearity).

All channel counts are multiplied by `width_multiplier` (rounded, at least 1).

minibatch_stddev_group_size > 0 (a training trick, not the paper's): ProGAN's minibatch
standard-deviation map (models.layers.minibatch_stddev) is concatenated to the input of
D's last conv (conv3x3 512 at H/8, ProGAN's place: before the last block at the lowest
resolution), which then reads 1 more channel.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from models.conditional import discriminator_head, generator_norm
from models.layers import Conv, Deconv4x4, Dense, lrelu, minibatch_stddev, normal_init, scaled_channels
from models.normalization import activation_norm

G_BN_MOMENTUM = 0.9
G_BN_EPSILON = 2e-5
D_LEAK = 0.1
# (channels, kernel, stride) of the 7 D convolutions
_D_CONVS = ((64, 3, 1), (128, 4, 2), (128, 3, 1), (256, 4, 2), (256, 3, 1), (512, 4, 2), (512, 3, 1))


def check_image_size(image_size: int) -> None:
    if image_size % 8 or image_size < 8:
        raise ValueError(
            f"image_size={image_size} is not allowed for architecture 'sndcgan'; use a multiple of 8 (32, 128, ...)"
        )


class SNDCGANGenerator(nn.Module):
    """z [batch, z_dim] float32 -> images [batch, H, W, C] in data_range."""

    batch_norm_momentum = G_BN_MOMENTUM  # every BN of G; the train step advances their averages
    image_shape: tuple[int, int, int]
    width_multiplier: float = 1.0
    bn_epsilon: float = G_BN_EPSILON
    tanh_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int = 0  # > 0: class-conditional BN (models.conditional), labels [batch] required

    @nn.compact
    def __call__(self, z: jnp.ndarray, train: bool = False, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        height, width, channels = self.image_shape
        ch = lambda n: scaled_channels(n, self.width_multiplier)  # noqa: E731
        bn = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=G_BN_MOMENTUM, epsilon=self.bn_epsilon,
            use_fast_variance=False, name=name,
        )
        if self.num_classes:
            bn = generator_norm(self.num_classes, labels, train, G_BN_MOMENTUM, self.bn_epsilon)
        x = Dense(height // 8 * width // 8 * ch(512), name="linear")(z)
        x = nn.relu(bn("bn0")(x))
        x = x.reshape(z.shape[0], height // 8, width // 8, ch(512))
        for i, features in enumerate((256, 128, 64)):
            x = Deconv4x4(ch(features), name=f"deconv{i + 1}")(x)
            x = nn.relu(bn(f"bn{i + 1}")(x))
        x = Conv(channels, 3, 1, kernel_init=normal_init, name="deconv4")(x)
        low, high = self.tanh_range
        return low + (high - low) * (jnp.tanh(x) + 1.0) / 2.0


class SNDCGANDiscriminator(nn.Module):
    """x [batch, H, W, C] in [0, 1] -> logits [batch] (or [batch, out_features] features
    when out_features > 1, the BEGAN encoder; with conditioning or an auxiliary head, see
    models.conditional.discriminator_head)."""

    width_multiplier: float = 1.0
    spectral: bool = False
    activation_norm: str | None = None
    out_features: int = 1
    minibatch_stddev_group_size: int = 0  # 0: off
    conditioning: str = "none"  # models.conditional.CONDITIONINGS
    num_classes: int = 0
    aux_outputs: int = 0  # ACGAN classifier / InfoGAN Q head width

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        x = 2.0 * x - 1.0
        for i, (features, kernel, stride) in enumerate(_D_CONVS):
            if self.minibatch_stddev_group_size and i == len(_D_CONVS) - 1:
                x = minibatch_stddev(x, self.minibatch_stddev_group_size)
            x = Conv(
                scaled_channels(features, self.width_multiplier), kernel, stride, self.spectral,
                kernel_init=normal_init, name=f"conv{i}",
            )(x, train)
            if i > 0:
                x = activation_norm(self.activation_norm, x, train, f"norm{i}")
            x = lrelu(x, D_LEAK)
        x = x.reshape(x.shape[0], -1)
        if self.conditioning != "none" or self.aux_outputs:
            return discriminator_head(self, x, labels, train, spectral=self.spectral, conditioning=self.conditioning,
                                      num_classes=self.num_classes, aux_outputs=self.aux_outputs)
        out = Dense(self.out_features, self.spectral, name="linear")(x, train)
        return out[:, 0] if self.out_features == 1 else out
