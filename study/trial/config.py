"""The one configuration object of a trial.

`TrialConfig` is a frozen dataclass holding every field a trial needs. Its field names
are the platform's public schema: results columns, search spaces, CLI filters and
reports all use them. Construct it from a plain dict with `TrialConfig.from_dict`;
unknown keys and out-of-range values raise `ConfigError` with one line naming the
field, the value and what is allowed.

Fields left as `None` are resolved from the scale preset (and the dataset) at
construction, so a stored config (`to_dict()`) is always fully explicit and
`TrialConfig.from_dict(c.to_dict()) == c`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Callable, Mapping

import models
from models.losses import AUTOENCODER_LOSSES
from study import data


class ConfigError(ValueError):
    """A bad configuration value. The message is one line: field, value, what is allowed."""


@dataclasses.dataclass(frozen=True)
class ScalePreset:
    """Defaults of one `scale`. `image_size=None` means the dataset's native size."""

    width_multiplier: float
    image_size: int | None
    train_steps: int | None  # None: the paper's per-(architecture, dataset) length
    eval_every: int
    eval_samples: int | None  # None: the dataset's paper FID sample count


# tiny: minutes on a 2-core CPU (README main command, CI); small: one GPU or a quick
# look; paper: the paper's networks, steps and evaluation protocol. Step counts are
# multiples of 5 so that n_dis in {1, 5} divides them.
SCALES: dict[str, ScalePreset] = {
    # tiny: digits at their native 8x8 (ResNet-CIFAR's smallest is 16x16), width 1/8, 400 D
    # steps evaluated at 200 and 400: the most training the 144-trial Table 1 default affords
    # in 30 minutes on a 2-core CPU (its GP arms cost ~2x a plain arm per D step). Learning
    # curves (README, "The tiny scale"): the old 100 steps had not started to learn; NS + SN at
    # lr 1e-3 is at fid_domain ~370-460 at 400-500 steps (untrained G ~853, mean image ~422,
    # uniform noise ~258, real data 6.3); below noise takes ~1,500+ steps at width 1/4.
    "tiny": ScalePreset(width_multiplier=0.125, image_size=8, train_steps=400, eval_every=200, eval_samples=300),
    "small": ScalePreset(width_multiplier=0.5, image_size=32, train_steps=10_000, eval_every=2_000, eval_samples=2_000),
    "paper": ScalePreset(width_multiplier=1.0, image_size=None, train_steps=None, eval_every=20_000, eval_samples=None),
}


# The smallest resolution an architecture supports (models.check has the full rule);
# a scale preset below it is raised to it.
_SMALLEST_IMAGE = {"resnet_cifar": 16}


def paper_train_steps(architecture: str, dataset: str) -> int:
    """Training length in D steps of the paper's best-model configs (compare_gan_v2 §6b)."""
    if architecture == "sndcgan" and dataset in ("celebahq128", "lsun_bedroom"):
        return 100_000
    return 200_000


ADAM_FORMS = ("tf", "optax")  # study.trial.train.ADAM_FORMS implements them
LATENT_DISTRIBUTIONS = ("uniform", "normal")  # z ~ U[-1, 1]^z_dim (the paper) | N(0, I)
DISCRIMINATOR_OPTIMIZERS = ("adam", "sgd")
LABEL_LOSSES = ("ns", "mm")  # losses with sigmoid cross-entropy targets: label smoothing / flips apply
_CHOICE_FIELDS = ("dataset", "architecture", "loss", "normalization", "penalty", "scale")


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs. Defaults: the paper's recommended arm (NS + SN + GP)."""

    # --- the arm (what is compared) ---
    dataset: str = dataclasses.field(default="digits", metadata={"program": True})
    architecture: str = dataclasses.field(default="sndcgan", metadata={"program": True})
    loss: str = dataclasses.field(default="ns", metadata={"program": True})
    # of the discriminator; G always uses batch norm
    normalization: str = dataclasses.field(default="spectral", metadata={"program": True})
    penalty: str = dataclasses.field(default="gp", metadata={"program": True})
    # --- the hyperparameters of Tables 1 and 2 ---
    penalty_weight: float = 10.0  # lambda; L_D += lambda * penalty
    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    discriminator_steps: int = 1  # n_dis: D updates per G update
    # --- fixed by the paper ---
    batch_size: int = dataclasses.field(default=64, metadata={"program": True})
    z_dim: int = dataclasses.field(default=128, metadata={"program": True})
    # --- length, evaluation, reproducibility ---
    train_steps: int | None = None  # counted in D updates, as the paper's code
    eval_every: int | None = None  # in D updates; the end is always evaluated too
    seed: int = 0
    scale: str = "tiny"
    image_size: int | None = dataclasses.field(default=None, metadata={"program": True})
    width_multiplier: float | None = dataclasses.field(default=None, metadata={"program": True})
    eval_samples: int | None = None  # real (test split) and fake samples for FID/KID
    fid_split: str = "test"
    # --- beyond the paper; defaults reproduce the paper ---
    discriminator_learning_rate: float | None = None  # TTUR; None: same as learning_rate
    adam_epsilon: float = dataclasses.field(default=1e-8, metadata={"program": True})
    # "tf": tf.train.AdamOptimizer's update (eps not bias-corrected), the paper's code;
    # "optax": optax.adam (eps added to sqrt of the bias-corrected second moment)
    adam_form: str = dataclasses.field(default="tf", metadata={"program": True})
    # bound of the classic WGAN weight clipping (penalty="clip")
    weight_clip: float = dataclasses.field(default=0.01, metadata={"program": True})
    began_gamma: float = dataclasses.field(default=0.5, metadata={"program": True})  # BEGAN diversity ratio
    began_k_learning_rate: float = dataclasses.field(default=0.001, metadata={"program": True})  # BEGAN lambda_k
    # --- ResNet ablation switches (study 5); defaults are the paper's ResNet ---
    # "conv" (learned 3x3) | "identity"
    resnet_d_shortcut: str = dataclasses.field(default="conv", metadata={"program": True})
    # CIN: D block hidden conv outputs c_in channels
    resnet_d_cin: bool = dataclasses.field(default=False, metadata={"program": True})
    # OPT: SNGAN's optimized first D block
    resnet_d_opt: bool = dataclasses.field(default=False, metadata={"program": True})
    # "mean" | "sum" (SUM) over positions at D output
    resnet_d_pooling: str = dataclasses.field(default="mean", metadata={"program": True})
    # TAN: tanh G output, data and D input in [-1, 1]
    resnet_tanh: bool = dataclasses.field(default=False, metadata={"program": True})
    # EPS: 2e-5; None: the architecture's default
    generator_bn_epsilon: float | None = dataclasses.field(default=None, metadata={"program": True})
    # --- training tricks (the `tricks` search space); defaults are the paper's training ---
    # One-sided label smoothing (Salimans et al. 2016, sec. 3.4): D's real target is
    # 1 - label_smoothing (0.1 gives 0.9); fake targets stay 0. NS/MM losses only.
    label_smoothing: float = dataclasses.field(default=0.0, metadata={"program": True})
    # Noisy labels: each real and each fake target of D is flipped (1 - s <-> 0) with this
    # probability, drawn per example from the D update's key. NS/MM losses only.
    label_flip_probability: float = dataclasses.field(default=0.0, metadata={"program": True})
    # Instance noise (Sonderby et al. 2016; Arjovsky & Bottou 2017): N(0, sigma_t^2) added to
    # every input of D (real, fake, the penalty's points, G's step), sigma_t = std *
    # max(0, 1 - step / instance_noise_anneal_steps) (None: train_steps; set when std > 0).
    instance_noise_std: float = dataclasses.field(default=0.0, metadata={"program": True})
    instance_noise_anneal_steps: int | None = dataclasses.field(default=None, metadata={"program": True})
    # z of training and evaluation: "uniform" U[-1,1] (paper) | "normal" N(0,1)
    latent_distribution: str = dataclasses.field(default="uniform", metadata={"program": True})
    # "adam" (paper; adam_form) | "sgd" (heavy-ball momentum, optax.sgd)
    discriminator_optimizer: str = dataclasses.field(default="adam", metadata={"program": True})
    discriminator_sgd_momentum: float = 0.9  # SGD momentum of D (discriminator_optimizer="sgd" only)
    # Minibatch standard deviation (Karras et al. 2018, ProGAN sec. 3): one feature map of the
    # mean per-feature std over groups of this many examples, concatenated before D's last
    # conv block. 0: off; ProGAN uses 4. Must divide batch_size.
    minibatch_stddev_group_size: int = dataclasses.field(default=0, metadata={"program": True})
    # --- conditional and latent-structured GANs (models.conditional); defaults: unconditional ---
    # "none" | "projection": class-conditional BN in G (de Vries et al. 2017) + projection D
    # (Miyato & Koyama 2018) | "acgan": class-conditional BN in G + auxiliary classifier D (Odena et al. 2017)
    conditioning: str = dataclasses.field(default="none", metadata={"program": True})
    # ACGAN: weight of the class loss L_C in D's and G's losses
    acgan_class_weight: float = dataclasses.field(default=1.0, metadata={"program": True})
    # InfoGAN (Chen et al. 2016): K of its one categorical code; 0: none
    infogan_categories: int = dataclasses.field(default=0, metadata={"program": True})
    # InfoGAN: number of continuous codes ~ U[-1, 1]; 0: none
    infogan_continuous: int = dataclasses.field(default=0, metadata={"program": True})
    # InfoGAN: lambda of the mutual-information term (G's and D/Q's losses)
    infogan_weight: float = dataclasses.field(default=1.0, metadata={"program": True})

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def program_fields(cls) -> tuple[str, ...]:
        """The fields that change the compiled program (metadata {"program": True}), in declaration
        order; study.trial.train.program_key keys the shared programs by them. Every other field
        is a traced value (lr, betas and D's SGD momentum in the optimizer states, lambda and n_dis
        in the train state; n_dis enters the program only through its batch slots) or stays on the
        host. The training tricks are compiled in: a trick arm has one value, so tracing it would
        save no compilation but add leaves to every checkpoint's layout and code to the paper's
        program, where at their defaults they add no operation."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("program"))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], coerce_strings: bool = False) -> "TrialConfig":
        """Builds a config from plain data (a search-space point, a results row, a CLI).

        With `coerce_strings`, string values ("1e-4", "true", "none") are parsed into the
        field's type first (the `KEY=VALUE` command line).
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown field {unknown[0]!r}; allowed fields: {', '.join(known)}"
            )
        kwargs = {}
        for name, value in values.items():
            if coerce_strings and isinstance(value, str):
                value = _parse_string(name, value, known[name].type)
            kwargs[name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)

    @property
    def trial_id(self) -> str:
        """A stable id of the fully resolved config: the same config is the same trial,
        in a resumed study or a merged report. Fields in `ID_OMITS_AT_DEFAULT` are left
        out while at their default, so adding a field does not rename existing trials."""
        values = self.to_dict()
        for name in ID_OMITS_AT_DEFAULT:
            if values[name] == _FIELD_DEFAULTS[name]:
                del values[name]
        blob = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def effective_discriminator_learning_rate(self) -> float:
        if self.discriminator_learning_rate is None:
            return self.learning_rate
        return self.discriminator_learning_rate

    @property
    def generator_updates(self) -> int:
        return self.train_steps // self.discriminator_steps

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:

        for name in _CHOICE_FIELDS:
            _check_choice(name, getattr(self, name), _choices(name))
        if self.fid_split not in ("test", "train"):
            raise ConfigError(f"fid_split={self.fid_split!r} is not allowed; choose test or train")
        for name in ("resnet_d_shortcut", "resnet_d_pooling", "adam_form", "latent_distribution",
                     "discriminator_optimizer"):
            allowed = {"resnet_d_shortcut": ("conv", "identity"), "resnet_d_pooling": ("mean", "sum"),
                       "adam_form": ADAM_FORMS, "latent_distribution": LATENT_DISTRIBUTIONS,
                       "discriminator_optimizer": DISCRIMINATOR_OPTIMIZERS}[name]
            _check_choice(name, getattr(self, name), allowed)

        self._coerce_numbers()
        preset = SCALES[self.scale]
        info = data.info(self.dataset)
        resolved = {
            "width_multiplier": preset.width_multiplier,
            "image_size": max(preset.image_size or info.image_size, _SMALLEST_IMAGE.get(self.architecture, 0)),
            "train_steps": preset.train_steps or paper_train_steps(self.architecture, self.dataset),
            "eval_every": preset.eval_every,
            "eval_samples": min(preset.eval_samples or info.fid_samples, info.split_size(self.fid_split)),
        }
        for name, value in resolved.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

        _check_range("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        if self.discriminator_learning_rate is not None:
            _check_range("discriminator_learning_rate", self.discriminator_learning_rate, 0.0, 1.0, low_open=True)
        _check_range("beta1", self.beta1, 0.0, 1.0)
        _check_range("beta2", self.beta2, 0.0, 1.0)
        _check_range("penalty_weight", self.penalty_weight, 0.0, 1e6)
        _check_range("adam_epsilon", self.adam_epsilon, 0.0, 1.0, low_open=True)
        _check_range("weight_clip", self.weight_clip, 0.0, 1e3, low_open=True)
        _check_range("began_gamma", self.began_gamma, 0.0, 1.0, low_open=True)
        _check_range("began_k_learning_rate", self.began_k_learning_rate, 0.0, 1.0)
        _check_range("width_multiplier", self.width_multiplier, 0.0, 4.0, low_open=True)
        if self.generator_bn_epsilon is not None:
            _check_range("generator_bn_epsilon", self.generator_bn_epsilon, 0.0, 1.0, low_open=True)
        _check_int("discriminator_steps", self.discriminator_steps, 1, 100)
        _check_int("batch_size", self.batch_size, 2, 1 << 16)
        _check_int("z_dim", self.z_dim, 1, 1 << 16)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("image_size", self.image_size, 4, 4096)
        _check_int("eval_samples", self.eval_samples, 2, 10**7)
        _check_int("train_steps", self.train_steps, 1, 10**9)
        _check_int("eval_every", self.eval_every, 1, 10**9)
        self._check_tricks()
        self._check_conditioning(info)
        for name in ("train_steps", "eval_every"):
            value = getattr(self, name)
            if value % self.discriminator_steps:
                raise ConfigError(
                    f"{name}={value} is not allowed with discriminator_steps={self.discriminator_steps}: "
                    f"it counts D updates and must be a multiple of discriminator_steps"
                )
        if self.eval_samples > info.split_size(self.fid_split):
            raise ConfigError(
                f"eval_samples={self.eval_samples} is larger than the {self.dataset} {self.fid_split} split "
                f"({info.split_size(self.fid_split)} images)"
            )

        try:
            models.check(self)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def _check_tricks(self) -> None:
        """The training tricks' ranges and the combinations where they mean something."""
        _check_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("label_flip_probability", self.label_flip_probability, 0.0, 0.5)
        for name in ("label_smoothing", "label_flip_probability"):
            if getattr(self, name) != 0.0 and self.loss not in LABEL_LOSSES:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not allowed with loss={self.loss!r}; "
                                  f"D has real/fake targets only with loss {' or '.join(LABEL_LOSSES)}")
        _check_range("instance_noise_std", self.instance_noise_std, 0.0, 100.0)
        if self.instance_noise_std == 0.0:
            if self.instance_noise_anneal_steps is not None:
                raise ConfigError(f"instance_noise_anneal_steps={self.instance_noise_anneal_steps!r} is not allowed "
                                  "with instance_noise_std=0; set instance_noise_std > 0 or leave it unset")
        else:
            if self.instance_noise_anneal_steps is None:
                object.__setattr__(self, "instance_noise_anneal_steps", self.train_steps)
            _check_int("instance_noise_anneal_steps", self.instance_noise_anneal_steps, 1, 10**9)
        _check_range("discriminator_sgd_momentum", self.discriminator_sgd_momentum, 0.0, 1.0)
        if self.discriminator_optimizer != "sgd" and self.discriminator_sgd_momentum != 0.9:
            raise ConfigError(f"discriminator_sgd_momentum={self.discriminator_sgd_momentum!r} is not allowed with "
                              f"discriminator_optimizer={self.discriminator_optimizer!r}; it applies to 'sgd' only")
        group = self.minibatch_stddev_group_size
        _check_int("minibatch_stddev_group_size", group, 0, self.batch_size)
        if group and self.batch_size % group:
            raise ConfigError(f"minibatch_stddev_group_size={group} is not allowed with batch_size={self.batch_size}; "
                              "it must divide the batch (0: off; ProGAN: 4)")
        if group and self.loss in ("began", "began_paper"):
            raise ConfigError(f"minibatch_stddev_group_size={group} is not allowed with loss={self.loss!r}; "
                              "BEGAN's D is an auto-encoder, the feature is for a classifier D")

    def _check_conditioning(self, info) -> None:
        """Conditioning needs a labelled dataset; InfoGAN's codes are >= 2 categories; BEGAN's
        auto-encoder D has no conditional form here, and labels plus InfoGAN codes are not combined."""

        _check_choice("conditioning", self.conditioning, _choices("conditioning"))
        if self.conditioning != "none" and info.num_classes == 0:
            labelled = [n for n in data.names() if data.info(n).num_classes]
            raise ConfigError(f"conditioning={self.conditioning!r} needs class labels, and dataset {self.dataset!r} "
                              f"has none; labelled datasets: {', '.join(labelled)}")
        _check_range("acgan_class_weight", self.acgan_class_weight, 0.0, 1e6)
        _check_range("infogan_weight", self.infogan_weight, 0.0, 1e6)
        _check_int("infogan_categories", self.infogan_categories, 0, 1000)
        _check_int("infogan_continuous", self.infogan_continuous, 0, 1000)
        if self.infogan_categories == 1:
            raise ConfigError("infogan_categories=1 is not allowed; use 0 (no categorical code) or at least 2")
        infogan = self.infogan_categories + self.infogan_continuous > 0
        if self.loss in AUTOENCODER_LOSSES and (self.conditioning != "none" or infogan):
            what = f"conditioning={self.conditioning!r}" if self.conditioning != "none" else "InfoGAN codes"
            raise ConfigError(f"loss={self.loss!r} is not allowed with {what}: BEGAN's auto-encoder D has no "
                              f"conditional form; use another loss or conditioning='none' and no InfoGAN codes")
        if self.conditioning != "none" and infogan:
            raise ConfigError(f"conditioning={self.conditioning!r} is not allowed with InfoGAN codes "
                              f"(infogan_categories={self.infogan_categories}, infogan_continuous="
                              f"{self.infogan_continuous}); use one or the other")

    def _coerce_numbers(self) -> None:
        """Ray and Ax hand back 5.0 for 5 and numpy scalars; store plain Python numbers."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _base_type(f.type)
            if value is None or kind is str:
                if kind is str and not isinstance(value, str):
                    raise ConfigError(f"{f.name}={value!r} is not allowed; expected a name (string)")
                continue
            if kind is bool:
                if not isinstance(value, bool) and value not in (0, 1):
                    raise ConfigError(f"{f.name}={value!r} is not allowed; expected true or false")
                object.__setattr__(self, f.name, bool(value))
            elif kind is int:
                # inf, nan and 1e400 are not integers: checked before int() (which raises
                # OverflowError / a message without the field's name on them).
                if (isinstance(value, bool) or not _is_number(value) or not math.isfinite(float(value))
                        or float(value) != int(float(value))):
                    raise ConfigError(f"{f.name}={value!r} is not allowed; expected an integer")
                object.__setattr__(self, f.name, int(value))
            elif kind is float:
                if isinstance(value, bool) or not _is_number(value) or not math.isfinite(float(value)):
                    raise ConfigError(f"{f.name}={value!r} is not allowed; expected a finite number")
                object.__setattr__(self, f.name, float(value))


# Fields added after trial ids were first published (the study layout of 2026-12): a trial at
# such a field's default keeps the id it had before the field existed, so a study started
# before the field was added resumes and merges. A field whose default changes what older
# trials computed must NOT be listed here (adam_form is not: older trials ran optax's Adam).
ID_OMITS_AT_DEFAULT: tuple[str, ...] = (
    "label_smoothing", "label_flip_probability", "instance_noise_std", "instance_noise_anneal_steps",
    "latent_distribution", "discriminator_optimizer", "discriminator_sgd_momentum", "minibatch_stddev_group_size",
    "conditioning", "acgan_class_weight", "infogan_categories", "infogan_continuous", "infogan_weight",
)
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrialConfig)}

# What a study written before a field existed ran with, where that is not the field's default:
# adam_form arrived (2026-12-01) with TF's Adam as the new default; earlier trials ran optax's.
_VALUES_BEFORE_FIELDS_EXISTED: dict[str, Any] = {"adam_form": "optax"}


def value_before_field_existed(name: str) -> Any:
    """The value a trial recorded before field `name` existed ran with (for reading older
    results): the field's old behaviour, which is its default for every field in
    ID_OMITS_AT_DEFAULT. KeyError for a field older studies always record."""
    if name in _VALUES_BEFORE_FIELDS_EXISTED:
        return _VALUES_BEFORE_FIELDS_EXISTED[name]
    if name in ID_OMITS_AT_DEFAULT:
        return _FIELD_DEFAULTS[name]
    raise KeyError(name)


def _choices(name: str) -> list[str]:

    if name == "scale":
        return list(SCALES)
    if name == "dataset":
        return data.names()

    if name == "conditioning":
        return models.CONDITIONINGS.names()

    registry = {
        "architecture": models.ARCHITECTURES,
        "loss": models.LOSSES,
        "normalization": models.NORMALIZATIONS,
        "penalty": models.PENALTIES,
    }[name]
    return registry.names()


def choices(name: str) -> list[str]:
    """The allowed names of a choice field (`loss`, `dataset`, ...)."""
    return _choices(name)


def _check_choice(name: str, value: Any, allowed) -> None:
    if value not in list(allowed):
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        return False
    return not isinstance(value, str)


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {bracket}{low:g}, {high:g}]")


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range; allowed: integers in [{low}, {high}]")


def _base_type(annotation: Any) -> type:
    text = str(annotation)
    for kind in (bool, int, float, str):
        if text.startswith(kind.__name__):
            return kind
    raise TypeError(f"unsupported field type {annotation!r}")


def _parse_string(name: str, text: str, annotation: Any) -> Any:
    kind = _base_type(annotation)
    if text.lower() in ("null", "none") and "None" in str(annotation):
        return None
    if kind is str:
        return text
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name}={text!r} is not allowed; expected true or false")
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not allowed; expected a number") from None
    # Named as typed: "1e400" overflows to inf, and the message must show what the user wrote.
    if not math.isfinite(number):
        expected = "a finite integer" if kind is int else "a finite number"
        raise ConfigError(f"{name}={text!r} is not allowed; expected {expected}")
    return number


def parse_assignments(pairs: list[str] | tuple[str, ...], *, flag: str, fields: list[str] | None = None,
                      check: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """`KEY=VALUE` command-line arguments as {KEY: VALUE} (strings, in the order given).

    The one parser of every command line that sets TrialConfig fields (study.run's --set,
    its Bayesian rounds, study.trial). A key given twice is refused with the same line
    everywhere: last-wins would silently drop the first value. Errors are one-line
    ConfigErrors, raised at the first bad argument, checked in this order per argument:

    * not KEY=VALUE: "{flag} 'x' is not KEY=VALUE"; without `fields`, the line also lists
      TrialConfig's fields;
    * `fields` (when given): the keys allowed ("{flag} field 'k' is unknown; allowed fields: ...");
    * the key given twice;
    * `check(key, value)` (when given): the caller's own rule; it raises its own error.
    """
    values: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            hint = "" if fields is not None else f"; fields: {', '.join(TrialConfig.field_names())}"
            raise ConfigError(f"{flag} {pair!r} is not KEY=VALUE{hint}")
        key, value = pair.split("=", 1)
        if fields is not None and key not in fields:
            raise ConfigError(f"{flag} field {key!r} is unknown; allowed fields: {', '.join(fields)}")
        if key in values:
            raise ConfigError(f"{key} is given twice ({key}={values[key]!r} and {key}={value!r}); give it once")
        if check is not None:
            check(key, value)
        values[key] = value
    return values
