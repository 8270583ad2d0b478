"""The search-space types (Range, Choice, Space), the registry of spaces, arm labels and expansion."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from typing import Any, Mapping

import numpy as np

from models.registry import Registry
from study.schema import ABLATION_DEFAULTS, CONDITIONAL_DEFAULTS, TRICK_DEFAULTS

# Penalties whose strength lambda matters; for the others the lambda axis collapses
# (no duplicate trials) and penalty_weight is stored as 0.0 ("no penalty term").
WEIGHTED_PENALTIES = ("gp", "dragan", "l2")
# grid/random: expanded here; bayesian: proposed round by round (study.sweep.bayes);
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
    (trick_label): `--arms "trick=baseline|label_smoothing=0.1"`."""
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


CONDITIONAL_ARM_DEFAULTS = CONDITIONAL_DEFAULTS
ABLATION_ARM_DEFAULTS = ABLATION_DEFAULTS


def _missing(value: Any) -> bool:
    """None, or NaN as a results table stores a None (generator_bn_epsilon)."""
    return value is None or (isinstance(value, float) and value != value)


def arm_name(trial: Mapping[str, Any]) -> str:
    """A readable arm label: architecture/loss/normalization/penalty/dataset, plus
    `+field=value` for each conditional / InfoGAN field, ResNet ablation switch and
    training trick at a non-default value (trick_label; an arm with none keeps its label)."""
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
    text = repr(sorted((k, repr(v)) for k, v in arm.items()))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def trick_label(trial: Mapping[str, Any]) -> str:
    """"baseline", or the trial's non-default trick fields as `field=value` joined by "+"
    (discriminator_sgd_momentum only with SGD, where it means something)."""
    parts = []
    for field, default in TRICK_DEFAULTS.items():
        value = trial.get(field, default)
        if field == "discriminator_sgd_momentum" and trial.get("discriminator_optimizer", "adam") != "sgd":
            continue
        if value != default:
            parts.append(f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}")
    return "+".join(parts) if parts else "baseline"
