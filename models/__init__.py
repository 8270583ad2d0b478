"""What a GAN is: architectures, D normalizations, losses and penalties, by name.

    gan = models.build(config, image_shape=(H, W, C))
    g_vars, d_vars = gan.init(rng)
    images, g_updates = gan.generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
    logits, d_updates = gan.discriminator.apply(d_vars, images, train=True, mutable=[...])

`config` is any object with `TrialConfig`'s attributes. Images live in `gan.data_range`
((0, 1); (-1, 1) with the TAN ablation), z [batch, z_dim] float32 ~ U[-1, 1] (drawn by the
train loop). D returns logits [batch], or for BEGAN the per-example reconstruction error.
Variables: G {"params", "batch_stats"}; D {"params"} plus "batch_stats" (BN) and
"spectral" (SN's u vectors) when used. Train mode updates every non-"params" collection;
eval mode uses BN moving averages and leaves SN's u alone.

Conditional and InfoGAN GANs (config.conditioning, infogan_*; models.conditional): G and D
then take `labels=` (int [batch]) where they use them, D may return (logits, auxiliary head),
and `gan.condition` says which; the default builds exactly the unconditional GAN.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.architectures import ARCHITECTURES, Architecture
from models.architectures.registry import began_discriminator
from models.conditional import CONDITIONINGS, ConditionSpec
from models.conditional import spec as condition_spec
from models.losses import AUTOENCODER_LOSSES, LOSSES, make_loss
from models.normalization import NORMALIZATIONS
from models.penalties import PENALTIES, make_penalty
from models.registry import Registry, UnknownNameError

__all__ = ["ARCHITECTURES", "CONDITIONINGS", "LOSSES", "NORMALIZATIONS", "PENALTIES", "GAN", "build", "check",
           "Registry"]


def _image_shape(config: Any, image_shape) -> tuple[int, int, int]:
    if image_shape is None:
        return (int(config.image_size), int(config.image_size), 3)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape={image_shape!r} is not allowed; expected (height, width, channels)")
    return shape


def check(config: Any, image_shape: tuple[int, int, int] | None = None) -> None:
    """Raises ValueError (one line) if `config` names an unknown component or a shape or
    switch its architecture does not support. No JAX computation."""
    architecture = ARCHITECTURES.get(config.architecture)
    LOSSES.get(config.loss)
    NORMALIZATIONS.get(config.normalization)
    PENALTIES.get(config.penalty)
    CONDITIONINGS.get(getattr(config, "conditioning", "none"))
    architecture.check(config, image_shape)


@dataclasses.dataclass(frozen=True)
class GAN:
    """A built GAN: Flax modules, the loss and penalty objects, shapes and ranges."""

    generator: nn.Module
    discriminator: nn.Module
    loss: Any
    penalty: Any
    z_dim: int
    image_shape: tuple[int, int, int]
    data_range: tuple[float, float]
    # labels / InfoGAN codes (models.conditional); the default is the unconditional GAN
    condition: ConditionSpec = ConditionSpec()

    def init(self, rng: jax.Array) -> tuple[dict, dict]:
        """(generator_variables, discriminator_variables), each {"params": ..., ...}.
        Initialised in eval mode (no statistics or u updated at init)."""
        g_rng, d_rng = jax.random.split(rng)
        z = jnp.zeros((1, self.z_dim), jnp.float32)
        x = jnp.zeros((1,) + self.image_shape, jnp.float32)
        if not self.condition.active:
            g_vars = self.generator.init({"params": g_rng}, z, train=False)
            d_vars = self.discriminator.init({"params": d_rng}, x, train=False)
            return dict(g_vars), dict(d_vars)
        labels = jnp.zeros((1,), jnp.int32)
        z_in, g_kwargs = self.condition.generator_inputs(z, self.condition.draw(jax.random.PRNGKey(0), 1))
        g_vars = self.generator.init({"params": g_rng}, z_in, train=False, **g_kwargs)
        d_vars = self.discriminator.init({"params": d_rng}, x, train=False,
                                         **self.condition.discriminator_kwargs(labels))
        return dict(g_vars), dict(d_vars)


def build(config: Any, image_shape: tuple[int, int, int] | None = None, num_classes: int = 0) -> GAN:
    """Builds G, D, loss and penalty named by `config` for images [H, W, C].

    num_classes: the dataset's class count, used when config.conditioning is not "none".
    """
    shape = _image_shape(config, image_shape)
    check(config, shape)
    architecture = ARCHITECTURES.get(config.architecture)
    tanh = bool(getattr(config, "resnet_tanh", False))
    data_range = (-1.0, 1.0) if tanh else (0.0, 1.0)
    condition = condition_spec(config, num_classes)
    if config.loss in AUTOENCODER_LOSSES:
        if condition.active:
            raise ValueError(f"loss={config.loss!r} does not support conditioning or InfoGAN codes")
        discriminator = began_discriminator(architecture, config, shape)
    elif condition.active:
        discriminator = architecture.discriminator(config, shape, 1, head=condition)
    else:
        discriminator = architecture.discriminator(config, shape, 1)
    g_classes = condition.num_classes if condition.kind.generator_labels else 0
    return GAN(
        generator=architecture.generator(config, shape, g_classes) if g_classes else architecture.generator(config, shape),
        discriminator=discriminator,
        loss=make_loss(config),
        penalty=make_penalty(config, data_range),
        z_dim=int(config.z_dim),
        image_shape=shape,
        data_range=data_range,
        condition=condition,
    )
