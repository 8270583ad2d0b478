"""What to sweep: declarative search spaces, by name.

A space is plain data: the **arms** (fixed combinations of architecture, loss,
normalization, penalty and possibly other fields) times the **hyperparameter axes**,
and the **search kind** (grid, random, bayesian). `expand` turns a grid or random
space into the list of trial dicts (each a valid `TrialConfig.from_dict` input);
Bayesian spaces are driven round by round by `study.bayes`.

    >>> import search_spaces
    >>> space = search_spaces.get("table1")
    >>> trials = search_spaces.expand(space, base={"dataset": "digits", "scale": "tiny"})
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from models.registry import Registry

# Penalties whose strength lambda matters; for the others the lambda axis collapses
# (no duplicate trials) and penalty_weight is stored as 0.0 ("no penalty term").
WEIGHTED_PENALTIES = ("gp", "dragan", "l2")
# grid/random: expanded here; bayesian: proposed round by round (study.bayes);
# rerun: the best settings of a finished study with new seeds (search_spaces.rerun).
SEARCH_KINDS = ("grid", "random", "bayesian", "rerun")


@dataclasses.dataclass(frozen=True)
class Range:
    """A continuous range; `log` samples log10-uniformly (the code's ranges, Table 2)."""

    low: float
    high: float
    log: bool = False

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))
        return float(rng.uniform(self.low, self.high))


@dataclasses.dataclass(frozen=True)
class Choice:
    values: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]


@dataclasses.dataclass(frozen=True)
class Space:
    """One search space.

    grid_axes: for `search="grid"`, a tuple of (field names, values) axes whose Cartesian
        product gives the points; an axis over several fields ties them together, e.g.
        (("beta1", "beta2", "discriminator_steps"), ((0.5, 0.9, 5), ...)).
    ranges: for random/bayesian, field -> Range | Choice. `penalty_weight_ranges` gives
        the lambda range per penalty (Table 2: L2 differs from GP/DRAGAN).
    """

    name: str
    description: str
    search: str  # grid | random | bayesian
    arms: tuple[Mapping[str, Any], ...]
    grid_axes: tuple[tuple[tuple[str, ...], tuple], ...] = ()
    ranges: Mapping[str, Range | Choice] = dataclasses.field(default_factory=dict)
    penalty_weight_ranges: Mapping[str, Range] = dataclasses.field(default_factory=dict)
    num_samples: int = 0  # random: settings per arm
    rounds: int = 0  # bayesian: rounds ...
    round_size: int = 0  # ... of this many settings
    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # fixed fields of every trial
    seed: int = 0  # random/bayesian sampling seed (trial seeds are the `seed` field)
    top: int = 0  # rerun: best settings per arm of the source study ...
    rerun_seeds: int = 0  # ... each re-trained with this many new seeds (see search_spaces.rerun)

    def __post_init__(self) -> None:
        if self.search not in SEARCH_KINDS:
            raise ValueError(f"search={self.search!r} is not allowed; choose one of {', '.join(SEARCH_KINDS)}")


SPACES: Registry[Space] = Registry("search space")


def get(name: str) -> Space:
    return SPACES.get(name)


def names() -> list[str]:
    return SPACES.names()


class ArmFilterError(ValueError):
    """A bad --arms filter."""


def parse_arm_filter(text: str | None) -> dict[str, set[str]]:
    """`"loss=ns|wgan,normalization=spectral"` -> {"loss": {"ns", "wgan"}, "normalization": {"spectral"}}."""
    if not text:
        return {}
    result: dict[str, set[str]] = {}
    for part in text.split(","):
        if "=" not in part:
            raise ArmFilterError(f"--arms entry {part!r} is not FIELD=VALUE[|VALUE...]")
        field, values = part.split("=", 1)
        field = field.strip()
        if not field or not values:
            raise ArmFilterError(f"--arms entry {part!r} is not FIELD=VALUE[|VALUE...]")
        result.setdefault(field, set()).update(v.strip() for v in values.split("|"))
    return result


def select_arms(space: Space, arm_filter: Mapping[str, set[str]] | None = None,
                base: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The space's arms (each merged over `base`) that match every filter field.

    Besides the arms' fields, `trick` filters by the arm's training-trick label
    (search_spaces.tricks.trick_label): `--arms "trick=baseline|label_smoothing=0.1"`."""
    from search_spaces.tricks import trick_label

    arms = [{**(base or {}), **space.base, **arm} for arm in space.arms]
    if not arm_filter:
        return arms
    labelled = [{**arm, "trick": trick_label(arm)} for arm in arms]
    known = set().union(*(arm.keys() for arm in labelled)) if arms else set()
    for field, allowed in arm_filter.items():
        if field not in known:
            raise ArmFilterError(
                f"--arms field {field!r} does not describe the arms of space {space.name!r}; "
                f"arm fields: {', '.join(sorted(known))}"
            )
        present = {str(arm.get(field)) for arm in labelled}
        missing = sorted(set(allowed) - present)
        if missing:
            raise ArmFilterError(
                f"--arms {field}={missing[0]!r} matches no arm of space {space.name!r}; "
                f"values present: {', '.join(sorted(present))}"
            )
    chosen = [arm for arm, view in zip(arms, labelled)
              if all(str(view.get(f)) in allowed for f, allowed in arm_filter.items())]
    if not chosen:
        raise ArmFilterError(f"--arms filter matches no arm of space {space.name!r}")
    return chosen


# The fields that make a conditional / latent-structured model (study.config, models.conditional),
# at their defaults (the paper's unconditional GAN); their loss weights are hyperparameters.
CONDITIONAL_ARM_DEFAULTS: dict[str, Any] = {"conditioning": "none", "infogan_categories": 0, "infogan_continuous": 0}
# The ResNet ablation switches (study 5; study.config), at their defaults (the paper's
# ResNet-CIFAR): each switched-on set is its own arm of the ablation space. (analysis.load.ABLATION_FIELDS
# names the same fields for the report, which does not import search_spaces.)
ABLATION_ARM_DEFAULTS: dict[str, Any] = {
    "resnet_d_shortcut": "conv", "resnet_d_cin": False, "resnet_d_opt": False, "resnet_d_pooling": "mean",
    "resnet_tanh": False, "generator_bn_epsilon": None,
}


def _missing(value: Any) -> bool:
    """None, or NaN as a results table stores a None (generator_bn_epsilon)."""
    return value is None or (isinstance(value, float) and value != value)


def arm_name(trial: Mapping[str, Any]) -> str:
    """A readable arm label: architecture/loss/normalization/penalty/dataset, plus
    `+field=value` for each conditional / InfoGAN field, ResNet ablation switch and
    training trick at a non-default value (search_spaces.tricks; an arm with none keeps its label)."""
    from search_spaces.tricks import trick_label

    label = "/".join(str(trial.get(k, "?")) for k in ("architecture", "loss", "normalization", "penalty", "dataset"))
    # A conditional or InfoGAN model is another model, never grouped with the unconditional one.
    for field, default in CONDITIONAL_ARM_DEFAULTS.items():
        if trial.get(field, default) != default:
            label += f"+{field}={trial[field]}"
    # An ablation switch changes the network: ablation arms are never grouped together.
    for field, default in ABLATION_ARM_DEFAULTS.items():
        value = trial.get(field, default)
        if not _missing(value) and value != default:
            label += f"+{field}={value}"
    trick = trick_label(trial)
    return label if trick == "baseline" else f"{label}+{trick}"


def _grid_points(space: Space, arm: Mapping[str, Any]) -> list[dict[str, Any]]:
    axes = []
    for fields, values in space.grid_axes:
        if fields == ("penalty_weight",) and arm.get("penalty", "none") not in WEIGHTED_PENALTIES:
            values = (0.0,)  # lambda has no effect: one setting, not duplicates
        axes.append([dict(zip(fields, v if len(fields) > 1 else (v,))) for v in values])
    points = []
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        points.append(point)
    return points


def sample_point(space: Space, arm: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One random setting from the space's ranges (Table 2), lambda by the arm's penalty."""
    point = {name: r.sample(rng) for name, r in space.ranges.items()}
    penalty = arm.get("penalty", "none")
    if penalty in WEIGHTED_PENALTIES:
        point["penalty_weight"] = space.penalty_weight_ranges[penalty].sample(rng)
    else:
        point["penalty_weight"] = 0.0
    return point


def expand(space: Space, base: Mapping[str, Any] | None = None,
           arm_filter: Mapping[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """All trial dicts of a grid or random space, in a stable order, without duplicates."""
    if space.search == "bayesian":
        raise ValueError(f"space {space.name!r} is Bayesian: its trials are proposed round by round")
    if space.search == "rerun":
        raise ValueError(f"space {space.name!r} reruns a finished study: see search_spaces.rerun.rerun_trials")
    trials: list[dict[str, Any]] = []
    seen: set = set()
    for arm in select_arms(space, arm_filter, base):
        if space.search == "grid":
            points = _grid_points(space, arm)
        else:
            # One generator per arm, seeded by (space seed, the arm's content), so
            # filtering arms does not change the settings an arm gets.
            rng = np.random.default_rng([space.seed, _stable_arm_key(arm)])
            points = [sample_point(space, arm, rng) for _ in range(space.num_samples)]
        for point in points:
            trial = {**arm, **point}
            if trial.get("penalty", "none") not in WEIGHTED_PENALTIES:
                trial["penalty_weight"] = 0.0  # no penalty term: store lambda as what it is
            key = tuple(sorted((k, repr(v)) for k, v in trial.items()))
            if key not in seen:
                seen.add(key)
                trials.append(trial)
    return trials


def _stable_arm_key(arm: Mapping[str, Any]) -> int:
    import hashlib

    text = repr(sorted((k, repr(v)) for k, v in arm.items()))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


from search_spaces import paper as _paper  # noqa: E402,F401  (registers the shipped spaces)
from search_spaces import tricks as _tricks  # noqa: E402,F401
