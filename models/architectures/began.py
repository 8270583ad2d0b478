"""The BEGAN discriminator: an auto-encoder whose output is the per-example L1
reconstruction error L(x) = mean_{h,w,c} |x - AE(x)| (Berthelot et al. 2017, eq. 2), [batch].

Our choice, per architecture at the same width multiplier: the encoder is the
architecture's own discriminator (same layers, D normalization, SN) whose final linear
outputs a `code_dim` code instead of one logit; the decoder is the architecture's
generator network (BN, output activation into the data range) applied to that code.
Departures from compare_gan v2's legacy `BEGAN.py` (a 1-conv encoder / 1-deconv decoder,
and a batch-level L2 error sqrt(2 l2_loss(x - AE(x))) / batch): a deeper AE matching the
architecture under study, and BEGAN's paper L1 error per example.
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
