"""The BEGAN discriminator: an auto-encoder whose output is the per-example L1
reconstruction error L(x) = mean_{h,w,c} |x - AE(x)| (Berthelot et al. 2017, eq. 2), [batch].

Our choice, per architecture at the same width multiplier: the encoder is the
architecture's own discriminator (same layers, D normalization, SN) whose final linear
outputs a `code_dim` code instead of one logit; the decoder is the architecture's
generator network (BN, output activation into the data range) applied to that code.
compare_gan v2's `gans/BEGAN.py` has its own small AE (encoder: conv4x4/2 64, lrelu,
conv4x4/2 128, linear to a 64-d code (+ BN if D uses it), lrelu; decoder: linear to
(H/4)(W/4)128 (+ BN), lrelu, deconv4x4/2 64 (+ BN), lrelu, deconv4x4/2 C, sigmoid) and
the same error, tf.reduce_mean(tf.abs(out - x)) over the batch = the batch mean of this
L(x). Our departure is the AE only: the architecture under study instead of v2's fixed
one. The losses and v2's k update are models.losses.BeganLoss.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class AutoEncoderDiscriminator(nn.Module):
    """x [batch, H, W, C] -> L(x) [batch] >= 0."""

    encoder: Any  # a discriminator module with out_features = code size
    decoder: Any  # a generator module: code [batch, code] -> images [batch, H, W, C]

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        code = self.encoder(x, train)
        reconstruction = self.decoder(code, train)
        return jnp.mean(jnp.abs(x - reconstruction), axis=(1, 2, 3))
