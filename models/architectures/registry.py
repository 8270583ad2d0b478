"""`ARCHITECTURES`: public name -> `Architecture` (shape check, G and D constructors)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from models.architectures import resnet, sndcgan
from models.architectures.began import AutoEncoderDiscriminator
from models.normalization import NORMALIZATIONS
from models.registry import Registry

_RESNET_SWITCHES = ("resnet_d_shortcut", "resnet_d_cin", "resnet_d_opt", "resnet_d_pooling", "resnet_tanh")
_RESNET_DEFAULTS = {"resnet_d_shortcut": "conv", "resnet_d_cin": False, "resnet_d_opt": False,
                    "resnet_d_pooling": "mean", "resnet_tanh": False}


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    check_image_size: Callable[[int], None]
    # (config, image_shape, num_classes=0) -> G module; num_classes > 0: class-conditional BN
    generator: Callable[..., Any]
    # (config, image_shape, out_features, head=None) -> D; head: models.conditional.ConditionSpec
    discriminator: Callable[..., Any]
    has_ablations: bool
    default_bn_epsilon: float

    def check(self, config: Any, image_shape: tuple[int, int, int] | None = None) -> None:
        """One-line ValueError for a shape or switch this architecture does not support."""
        size = config.image_size if image_shape is None else image_shape[0]
        if image_shape is not None and image_shape[0] != image_shape[1]:
            raise ValueError(f"image_shape={tuple(image_shape)} is not allowed; images must be square")
        self.check_image_size(int(size))
        if not self.has_ablations:
            for field in _RESNET_SWITCHES:
                value = getattr(config, field, _RESNET_DEFAULTS[field])
                if value != _RESNET_DEFAULTS[field]:
                    raise ValueError(
                        f"{field}={value!r} is not allowed for architecture {self.name!r}; "
                        f"the ResNet ablation switches need resnet19 or resnet_cifar (default {_RESNET_DEFAULTS[field]!r})"
                    )


def _bn_epsilon(config: Any, default: float) -> float:
    value = getattr(config, "generator_bn_epsilon", None)
    return default if value is None else float(value)


def _minibatch_stddev(config: Any) -> int:
    return int(getattr(config, "minibatch_stddev_group_size", 0) or 0)


def _width(config: Any) -> float:
    return float(config.width_multiplier)


def _head(head) -> dict:
    """D's conditioning fields from a models.conditional.ConditionSpec (None: unconditional)."""
    if head is None:
        return {}
    return {"conditioning": head.conditioning, "num_classes": head.num_classes, "aux_outputs": head.aux_outputs}


def _sndcgan_generator(config, image_shape, num_classes=0):
    return sndcgan.SNDCGANGenerator(
        image_shape=tuple(image_shape), width_multiplier=_width(config),
        bn_epsilon=_bn_epsilon(config, sndcgan.G_BN_EPSILON), num_classes=int(num_classes),
    )


def _sndcgan_discriminator(config, image_shape, out_features=1, head=None):
    norm = NORMALIZATIONS.get(config.normalization)
    return sndcgan.SNDCGANDiscriminator(
        width_multiplier=_width(config), spectral=norm.spectral, activation_norm=norm.activation_norm,
        out_features=out_features, minibatch_stddev_group_size=_minibatch_stddev(config),
        **_head(head),
    )


def _resnet_builders(layout_fn):
    def generator(config, image_shape, num_classes=0):
        return resnet.ResNetGenerator(
            layout=layout_fn(image_shape[0]), image_shape=tuple(image_shape), width_multiplier=_width(config),
            bn_epsilon=_bn_epsilon(config, resnet.BN_EPSILON), tanh_output=bool(getattr(config, "resnet_tanh", False)),
            num_classes=int(num_classes),
        )

    def discriminator(config, image_shape, out_features=1, head=None):
        norm = NORMALIZATIONS.get(config.normalization)
        return resnet.ResNetDiscriminator(
            layout=layout_fn(image_shape[0]), width_multiplier=_width(config), spectral=norm.spectral,
            activation_norm=norm.activation_norm,
            identity_shortcut=getattr(config, "resnet_d_shortcut", "conv") == "identity",
            hidden_c_in=bool(getattr(config, "resnet_d_cin", False)),
            optimized_first_block=bool(getattr(config, "resnet_d_opt", False)),
            sum_pooling=getattr(config, "resnet_d_pooling", "mean") == "sum",
            out_features=out_features, minibatch_stddev_group_size=_minibatch_stddev(config),
            **_head(head),
        )

    return generator, discriminator


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
ARCHITECTURES.add("sndcgan", Architecture(
    "sndcgan", sndcgan.check_image_size, _sndcgan_generator, _sndcgan_discriminator,
    has_ablations=False, default_bn_epsilon=sndcgan.G_BN_EPSILON,
))
for _name, _layout in (("resnet19", resnet.resnet19_layout), ("resnet_cifar", resnet.resnet_cifar_layout)):
    _g, _d = _resnet_builders(_layout)
    ARCHITECTURES.add(_name, Architecture(
        _name, _layout, _g, _d, has_ablations=True, default_bn_epsilon=resnet.BN_EPSILON,
    ))


def began_discriminator(architecture: Architecture, config, image_shape):
    """The BEGAN auto-encoder D for `architecture` (see models.architectures.began)."""
    code_dim = int(config.z_dim)
    return AutoEncoderDiscriminator(
        encoder=architecture.discriminator(config, image_shape, code_dim),
        decoder=architecture.generator(config, image_shape),
    )
