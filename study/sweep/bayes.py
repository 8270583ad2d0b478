"""Table 2: sequential Bayesian optimization, 12 rounds of 10 settings per arm, with Ax.

Kurach et al. (ICML 2019), Table 2: per arm (fixed loss, normalization, penalty,
architecture, dataset), 120 settings in 12 rounds of 10; each round is proposed as one
batch from a GP fitted on all finished trials of the arm (the paper: GP-UCB, Srinivas
et al. 2010). The objective is a trial's FID, i.e. the minimum FID over its evaluated
checkpoints (`best_score` in the results rows), minimized.

Two layers:

* `RoundOptimizer` — pure, no Ray: one arm's Ax `Client` plus the round bookkeeping.
  `propose_round()` -> the next round's `Proposal`s, `complete(index, objective)`,
  `to_state()` / `from_state()` (JSON-safe; `save` / `load` write it atomically).
* `run_bayesian` — the thin Ray Tune layer used by `study.run`: one Ray experiment
  (`study.sweep.tune.run_experiment`) per round over all arms' proposals of that round,
  each proposal one `study.sweep.tune.trainable` trial.

Acquisition: Ax 1.3.1's default generation strategy ("fast"): quasi-random Sobol for
the first round (`initialization_budget = round_size`, seeded), then Ax's Modular
BoTorch model: a `SingleTaskGP` (BoTorch's default dimension-scaled priors, fitted by
maximizing the marginal likelihood) with `qLogNoisyExpectedImprovement`, each round one
batch of `round_size` points (pending points of the batch are fantasized). Not GP-UCB:
UCB needs a beta schedule the paper does not state and Ax's Client exposes no UCB switch;
qLogNEI is Ax's tested default for noisy objectives, and FID is noisy.

Decisions (see the constants):

* beta1, beta2 are searched in [0, ADAM_BETA_MAX] = [0, 0.999], not the paper's [0, 1]:
  beta = 1.0 makes Adam's bias correction 1 - beta^t zero (a division by zero), and a GP
  acquisition optimizer readily proposes points on the box boundary, which would spend
  trials on a degenerate optimizer. 0.999 is Adam's default and Table 1's largest beta2.
* A trial's objective is its best finite score (the paper's min over checkpoints), also
  for a trial that diverged after some finite evaluations. A trial with no finite score
  (diverged at once, failed after its retries) is data, never dropped: Ax gets the worst
  finite objective seen in that arm so far (all rounds), or DIVERGED_FALLBACK_OBJECTIVE
  while the arm has none. Penalized values are fed when the next round is proposed, so
  the worst value of the whole round is known.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

import search_spaces
from search_spaces import WEIGHTED_PENALTIES, Choice, Range, Space, arm_name
from study.storage import store
from study.storage.location import Location, at
from study.sweep import tune
from study.trial.config import ConfigError, TrialConfig, parse_assignments

ADAM_BETA_MAX = 0.999
BETA_PARAMETERS = ("beta1", "beta2")
# Ax's objective for a trial with no finite score while its arm has no finite one yet.
# FID of untrained generators is a few hundred; the exact value matters little since
# it is replaced by real data as soon as one trial of the arm has a finite score.
DIVERGED_FALLBACK_OBJECTIVE = 500.0
OBJECTIVE = "objective"
STATE_VERSION = 1
BAYES_DIR = "bayes"

_logging_quieted = False


class BayesError(ValueError):
    """A bad input to the Bayesian searcher (one line)."""


def _quiet_ax() -> None:
    # Ax logs every generated trial at INFO; a study of 8 arms x 120 trials drowns the
    # progress lines.
    global _logging_quieted
    if not _logging_quieted:
        for name in ("ax", "botorch", "pyro"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _logging_quieted = True


# ---------------------------------------------------------------------------- parameters
def parameter_ranges(space: Space, arm: Mapping[str, Any]) -> dict[str, Range | Choice]:
    """The searched parameters of one arm (Table 2), beta upper bounds capped at ADAM_BETA_MAX.

    penalty_weight is searched only for penalties whose lambda matters (gp, dragan, l2),
    over the penalty's own range (Table 2: L2 [1e-4, 1e1], others [1e-1, 1e2]).
    """
    if space.search != "bayesian":
        raise BayesError(f"space {space.name!r} is {space.search}, not bayesian")
    if space.rounds < 1 or space.round_size < 1:
        raise BayesError(f"space {space.name!r}: rounds={space.rounds} and round_size={space.round_size} must be >= 1")
    ranges: dict[str, Range | Choice] = {}
    for name, spec in space.ranges.items():
        if name == "penalty_weight":
            raise BayesError(f"space {space.name!r}: penalty_weight belongs in penalty_weight_ranges, not ranges")
        if isinstance(spec, Range) and name in BETA_PARAMETERS:
            spec = Range(spec.low, min(spec.high, ADAM_BETA_MAX), spec.log)
        ranges[name] = spec
    penalty = arm.get("penalty", "none")
    if penalty in WEIGHTED_PENALTIES:
        if penalty not in space.penalty_weight_ranges:
            raise BayesError(f"space {space.name!r} has no penalty_weight range for penalty {penalty!r}")
        ranges["penalty_weight"] = space.penalty_weight_ranges[penalty]
    for name, spec in ranges.items():
        if isinstance(spec, Range) and not (spec.low < spec.high and (not spec.log or spec.low > 0)):
            raise BayesError(f"space {space.name!r}: range of {name} [{spec.low}, {spec.high}] is empty or "
                             f"not positive on a log scale")
    return ranges


def _ax_parameters(ranges: Mapping[str, Range | Choice]) -> list:
    from ax import ChoiceParameterConfig, RangeParameterConfig

    parameters = []
    for name, spec in ranges.items():
        if isinstance(spec, Range):
            parameters.append(RangeParameterConfig(
                name=name, parameter_type="float", bounds=(float(spec.low), float(spec.high)),
                scaling="log" if spec.log else "linear"))
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in spec.values):
            # n_dis in {1, 5}: ordered, so the GP sees 5 as "more D steps" than 1.
            parameters.append(ChoiceParameterConfig(
                name=name, parameter_type="int", values=sorted(spec.values), is_ordered=True))
        elif all(isinstance(v, float) for v in spec.values):
            parameters.append(ChoiceParameterConfig(
                name=name, parameter_type="float", values=sorted(spec.values), is_ordered=True))
        else:
            parameters.append(ChoiceParameterConfig(
                name=name, parameter_type="str", values=[str(v) for v in spec.values], is_ordered=False))
    return parameters


def arm_key(arm: Mapping[str, Any]) -> str:
    """A file-name-safe, stable key of an arm: readable label plus a hash of all its fields."""
    label = search_spaces.arm_name(arm).replace("/", "-")
    digest = hashlib.sha256(json.dumps(dict(arm), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{label}-{digest}"


# ---------------------------------------------------------------------------- optimizer
@dataclasses.dataclass(frozen=True)
class Proposal:
    """One proposed setting: the Ax trial index, its round (0-based) and the TrialConfig
    fields it sets (penalty_weight is 0.0 for arms without a weighted penalty)."""

    index: int
    round: int
    params: dict[str, Any]


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _write_json_atomic(data: Any, path: Any) -> None:

    if isinstance(path, Location) and not path.is_local:
        path.write_text(json.dumps(data, sort_keys=True))  # one PUT: atomic on an object store
        return
    path = path.local_path if isinstance(path, Location) else pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# Acquisition-optimizer effort of the GP rounds. "default": Ax's own settings (the
# study). "fast": 2 restarts from 128 raw samples, about 3x cheaper per point on this
# CPU, for tests and benchmarks (same model, same acquisition; a less polished optimum).
ACQUISITION_EFFORT = {
    "default": None,
    "fast": {"optimizer_kwargs": {"num_restarts": 2, "raw_samples": 128}},
}


def _generation_strategy(round_size: int, seed: int, effort: str):
    """Ax's default ("fast" method) strategy: Sobol for the first round (seeded, no center
    point, budget = one round so round 1 is a full batch), then the Modular BoTorch GP
    with qLogNoisyExpectedImprovement."""
    from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
    from ax.api.utils.structs import GenerationStrategyDispatchStruct

    strategy = choose_generation_strategy(GenerationStrategyDispatchStruct(
        method="fast", initialization_budget=round_size, initialization_random_seed=seed,
        initialize_with_center=False))
    options = ACQUISITION_EFFORT[effort]
    if options is not None:
        node = strategy.nodes_by_name["MBM"]
        node.generator_specs[0].generator_gen_kwargs["model_gen_options"] = json.loads(json.dumps(options))
    return strategy


class RoundOptimizer:
    """Table 2's sequential BO for one arm: `space.rounds` rounds of `space.round_size`.

    State is explicit: the Ax client (experiment + generation strategy) and `trials`, a
    list of {"index", "round", "params", "objective", "fed"} records. `objective` is the
    raw objective (None until completed; NaN for no finite score), `fed` what Ax got.
    Randomness is seeded: Sobol by `seed`, each round's BoTorch fit and acquisition
    optimization by (seed, round), so a reloaded optimizer proposes what an
    uninterrupted one would.
    """

    def __init__(self, space: Space, arm: Mapping[str, Any], seed: int = 0, *, effort: str = "default",
                 _client=None, _trials: Sequence[Mapping[str, Any]] = ()):
        _quiet_ax()
        if effort not in ACQUISITION_EFFORT:
            raise BayesError(f"effort={effort!r} is not allowed; choose one of: {', '.join(ACQUISITION_EFFORT)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BayesError(f"seed={seed!r} is not allowed; it must be an integer >= 0")
        self.space = space
        self.arm = dict(arm)
        self.seed = seed
        self.ranges = parameter_ranges(space, self.arm)
        self.trials: list[dict[str, Any]] = [dict(t) for t in _trials]
        if _client is None:
            from ax import Client

            _client = Client()
            _client.configure_experiment(parameters=_ax_parameters(self.ranges), name=arm_key(self.arm))
            _client.configure_optimization(objective=f"-{OBJECTIVE}")  # minimize FID
            # Round 1 is all Sobol (no center point): a GP needs observations first, and
            # with Ax's default budget of 5 the first round could not be a batch of 10.
            _client.set_generation_strategy(_generation_strategy(space.round_size, seed, effort))
        self.client = _client

    # -------------------------------------------------------------- bookkeeping
    @property
    def rounds_proposed(self) -> int:
        return 1 + max((t["round"] for t in self.trials), default=-1)

    @property
    def finished(self) -> bool:
        return self.rounds_proposed >= self.space.rounds and not self.open_indices()

    def open_indices(self) -> list[int]:
        """Ax indices of proposed trials without an objective yet."""
        return [t["index"] for t in self.trials if t["objective"] is None]

    def proposals(self, round_index: int) -> list[Proposal]:
        return [Proposal(t["index"], t["round"], dict(t["params"])) for t in self.trials if t["round"] == round_index]

    def worst_finite_objective(self) -> float | None:
        values = [t["objective"] for t in self.trials if _is_finite(t["objective"])]
        return max(values) if values else None

    def best(self) -> tuple[float, dict[str, Any]] | None:
        """(objective, params) of the best finite trial so far."""
        done = [t for t in self.trials if _is_finite(t["objective"])]
        if not done:
            return None
        top = min(done, key=lambda t: t["objective"])
        return float(top["objective"]), dict(top["params"])

    def _record(self, index: int) -> dict[str, Any]:
        for trial in self.trials:
            if trial["index"] == index:
                return trial
        raise BayesError(f"trial index {index} was not proposed by this optimizer (arm {arm_key(self.arm)})")

    # -------------------------------------------------------------- the loop
    def propose_round(self) -> list[Proposal]:
        """The next round's batch of `round_size` settings, from a GP on all finished trials."""
        if self.rounds_proposed >= self.space.rounds:
            raise BayesError(f"all {self.space.rounds} rounds of arm {arm_key(self.arm)} are already proposed")
        if self.open_indices():
            raise BayesError(f"round {self.rounds_proposed - 1} of arm {arm_key(self.arm)} has "
                             f"{len(self.open_indices())} trial(s) without an objective; complete them first")
        self._feed_penalized()
        from ax.utils.common.random import with_rng_seed

        round_index = self.rounds_proposed
        generated: dict[int, Any] = {}
        with with_rng_seed(seed=self.seed * 1000 + round_index):
            # Ax 1.3.1 caps a request by the *current* node's limit before it moves from
            # Sobol to the GP, so the first GP round comes back with 1 point: ask again
            # for the rest (the earlier points of the batch are pending, i.e. fantasized).
            for _ in range(self.space.round_size):
                missing = self.space.round_size - len(generated)
                if missing <= 0:
                    break
                generated.update(self.client.get_next_trials(max_trials=missing))
        if len(generated) != self.space.round_size:
            raise BayesError(f"Ax proposed {len(generated)} settings for round {round_index} of arm "
                             f"{arm_key(self.arm)}, not {self.space.round_size}")
        new = []
        for index in sorted(generated):
            params = self._trial_params(generated[index])
            self.trials.append({"index": int(index), "round": round_index, "params": params,
                                "objective": None, "fed": None})
            new.append(Proposal(int(index), round_index, dict(params)))
        return new

    def complete(self, index: int, objective: float | None) -> None:
        """Records trial `index`'s objective (min FID over its evaluations).

        None, NaN or inf mean "no finite score" (diverged at once, failed): the trial is
        penalized (see the module docstring), not dropped.
        """
        trial = self._record(index)
        if trial["objective"] is not None:
            raise BayesError(f"trial index {index} of arm {arm_key(self.arm)} is already complete")
        if objective is not None and (isinstance(objective, bool) or not isinstance(objective, (int, float))):
            raise BayesError(f"objective={objective!r} for trial {index} is not a number")
        value = float("nan") if objective is None or not math.isfinite(objective) else float(objective)
        trial["objective"] = value
        if math.isfinite(value):
            self.client.complete_trial(trial_index=index, raw_data={OBJECTIVE: value})
            trial["fed"] = value

    def _feed_penalized(self) -> None:
        """Gives Ax the penalized objective of trials without a finite score (once)."""
        penalty = self.worst_finite_objective()
        penalty = DIVERGED_FALLBACK_OBJECTIVE if penalty is None else penalty
        for trial in self.trials:
            if trial["objective"] is not None and trial["fed"] is None:
                self.client.complete_trial(trial_index=trial["index"], raw_data={OBJECTIVE: penalty})
                trial["fed"] = penalty

    def _trial_params(self, ax_params: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, spec in self.ranges.items():
            value = ax_params[name]
            if isinstance(spec, Range):
                # Ax may hand back a bound off by a rounding error; TrialConfig checks ranges.
                value = min(max(float(value), spec.low), spec.high)
            elif isinstance(value, str):
                value = next(v for v in spec.values if str(v) == value)
            params[name] = value
        if "penalty_weight" not in params:
            params["penalty_weight"] = 0.0  # no weighted penalty: lambda stored as "no term"
        return params

    # -------------------------------------------------------------- state
    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot: the Ax client (Ax's own JSON) and the round bookkeeping.

        NaN objectives are stored as None under "objective_nan" so the file is strict JSON.
        """
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ax.json")
            self.client.save_to_json_file(path)
            with open(path) as handle:
                ax_state = json.load(handle)
        trials = []
        for t in self.trials:
            record = dict(t)
            if _is_finite(record["objective"]) or record["objective"] is None:
                record["objective_nan"] = False
            else:
                record["objective"], record["objective_nan"] = None, True
            trials.append(record)
        return {"version": STATE_VERSION, "space": self.space.name, "arm": self.arm, "seed": self.seed,
                "rounds": self.space.rounds, "round_size": self.space.round_size, "trials": trials, "ax": ax_state}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], space: Space) -> "RoundOptimizer":
        if state.get("version") != STATE_VERSION:
            raise BayesError(f"Bayesian state version {state.get('version')!r} is not {STATE_VERSION}")
        if state.get("space") != space.name or (state.get("rounds"), state.get("round_size")) != (
                space.rounds, space.round_size):
            raise BayesError(f"Bayesian state is for space {state.get('space')!r} with {state.get('rounds')} rounds "
                             f"of {state.get('round_size')}, not {space.name!r} ({space.rounds} x {space.round_size})")
        from ax import Client

        _quiet_ax()
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ax.json")
            with open(path, "w") as handle:
                json.dump(state["ax"], handle)
            client = Client.load_from_json_file(path)
        trials = []
        for t in state["trials"]:
            record = {k: v for k, v in t.items() if k != "objective_nan"}
            if t.get("objective_nan"):
                record["objective"] = float("nan")
            trials.append(record)
        return cls(space, state["arm"], int(state["seed"]), _client=client, _trials=trials)

    def save(self, path: pathlib.Path | str) -> None:
        """Writes the state atomically (temporary file, fsync, rename): a kill leaves the
        previous or the new state, never a torn one."""
        _write_json_atomic(self.to_state(), path)

    @classmethod
    def load(cls, path: Any, space: Space) -> "RoundOptimizer":

        try:
            state = json.loads(at(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise BayesError(f"cannot read Bayesian state {path}: {error}") from None
        return cls.from_state(state, space)


# ---------------------------------------------------------------------------- Ray layer
def trial_outcome(study_dir: pathlib.Path, trial_id: str) -> tuple[str, float] | None:
    """(status, objective) of a finished trial from its rows.parquet, or None if it has
    not finished. objective: the min finite score over its evaluations, NaN if none."""
    import pandas as pd



    ended = store.read_final(at(study_dir) / store.TRIALS_DIR / trial_id)
    if ended is None or ended[1]["status"] not in ("completed", "diverged", "failed"):
        return None
    rows, final = ended
    scores = pd.to_numeric(rows.get("score", pd.Series(dtype=float)), errors="coerce")
    scores = scores[scores.map(math.isfinite)] if len(scores) else scores
    return str(final["status"]), float(scores.min()) if len(scores) else float("nan")


def _parse_overrides(pairs: Sequence[str], searched: set[str]) -> dict[str, str]:
    """The --set KEY=VALUE pairs (study.trial.config.parse_assignments), none of them a
    field the search chooses."""

    def not_searched(key: str, value: str) -> None:
        if key in searched:
            raise BayesError(f"--set {key} conflicts with the Bayesian search, which chooses {key} (Table 2)")

    try:
        return parse_assignments(pairs or (), flag="--set", fields=TrialConfig.field_names(), check=not_searched)
    except ConfigError as error:
        raise BayesError(str(error)) from None


def trial_dict(arm: Mapping[str, Any], params: Mapping[str, Any], overrides: Mapping[str, str],
               seed: int = 0) -> dict[str, Any]:
    """Arm fields + proposed point + --set overrides + seed, validated and fully resolved."""

    return TrialConfig.from_dict({**arm, **params, **overrides, "seed": seed}, coerce_strings=True).to_dict()


def state_path(study_dir: Any, arm: Mapping[str, Any]):
    """The arm's optimizer state in the study's storage (a study.storage.location.Location)."""

    return at(study_dir) / BAYES_DIR / f"{arm_key(arm)}.json"


def run_bayesian(study_dir: pathlib.Path, space: Space, arms: Sequence[Mapping[str, Any]], *,
                 identity: Mapping[str, Any], resources: Any, args: Any,
                 trainable: Callable[[dict], None] | None = None, seed: int = 0,
                 log: Callable[[str], None] | None = None) -> dict[str, RoundOptimizer]:
    """Runs Table 2's rounds for every arm through Ray Tune; resumable.

    Per round: each arm's optimizer proposes (or, on resume, re-reads) its batch and its
    state is saved before anything runs; trials whose rows already say finished are
    completed from disk; the rest run in one Ray experiment (all arms of the round together,
    at most `resources.max_concurrent` or the round's trial count at a time). After the round,
    each trial's objective (from its rows.parquet) is fed to its arm's optimizer, whose
    state is saved atomically once per round. `args.seeds` is not used: Table 2 has one run per setting (seed 0).
    Returns {arm_key: optimizer}.
    """
    import ray  # noqa: F401  (fail early with Ray's own message if missing)

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))

    study_dir = at(study_dir)
    if not arms:
        raise BayesError(f"space {space.name!r}: no arms to optimize")
    trainable = trainable or tune.trainable
    optimizers = _load_optimizers(study_dir, space, arms, seed, log)
    searched = set().union(*(opt.ranges for opt in optimizers.values())) | {"penalty_weight", "seed"}
    overrides = _parse_overrides(getattr(args, "overrides", None) or [], searched)
    arm_of = {key: dict(optimizers[key].arm) for key in optimizers}

    tune.init_ray(getattr(args, "address", None))
    progress = tune.Progress(len(arms) * space.rounds * space.round_size, study_dir, stream=_Stderr())
    retries = int(getattr(args, "retries", 2))

    for round_index in range(space.rounds):
        to_run = _plan_round(study_dir, round_index, optimizers, arm_of, overrides, progress)
        if to_run:
            started = time.perf_counter()
            _run_round(study_dir, round_index, to_run, optimizers, arm_of, progress, identity=identity,
                       trainable=trainable, resources=resources, retries=retries)
            log(f"[study {study_dir.name}] round {round_index + 1}/{space.rounds}: {len(to_run)} trial(s) in "
                f"{time.perf_counter() - started:.0f}s")
        for key, optimizer in optimizers.items():
            best = optimizer.best()
            if best is not None:
                log(f"[study {study_dir.name}] {key} after round {round_index + 1}: best objective {best[0]:.3f}")
    store.collect(study_dir)
    return optimizers


def _load_optimizers(study_dir: Location, space: Space, arms: Sequence[Mapping[str, Any]], seed: int,
                     log: Callable[[str], None]) -> dict[str, RoundOptimizer]:
    """{arm_key: optimizer}: each arm's saved state where the study has one, else a new optimizer."""
    optimizers: dict[str, RoundOptimizer] = {}
    for arm in arms:
        key = arm_key(arm)
        path = state_path(study_dir, arm)
        optimizers[key] = RoundOptimizer.load(path, space) if path.exists() else RoundOptimizer(space, arm, seed)
        if path.exists():
            log(f"[study {study_dir.name}] {key}: resuming at round {optimizers[key].rounds_proposed} "
                f"({sum(t['objective'] is not None for t in optimizers[key].trials)} trials done)")
    return optimizers


def _plan_round(study_dir: Location, round_index: int, optimizers: Mapping[str, RoundOptimizer],
                arm_of: Mapping[str, dict[str, Any]], overrides: Mapping[str, str],
                progress: tune.Progress) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """{trial_id: (arm key, Ax index, trial dict)} of the round's trials still to run.

    Each arm's round is proposed if it was not yet and saved before any of its trials
    runs; a trial whose rows already hold a finished (not failed) outcome is completed
    from them instead of run again.
    """
    to_run: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for key, optimizer in optimizers.items():
        if optimizer.rounds_proposed <= round_index:
            optimizer.propose_round()
            optimizer.save(state_path(study_dir, arm_of[key]))  # before any trial of the round runs
        for proposal in optimizer.proposals(round_index):
            record = optimizer._record(proposal.index)
            if record["objective"] is not None:
                progress.done += 1
                continue
            trial = trial_dict(arm_of[key], proposal.params, overrides, seed=0)
            trial_id = _trial_id(trial)
            outcome = trial_outcome(study_dir, trial_id)
            if outcome is not None and outcome[0] != "failed":
                optimizer.complete(proposal.index, outcome[1])
                progress.done += 1
            else:
                to_run[trial_id] = (key, proposal.index, trial)
        optimizer.save(state_path(study_dir, arm_of[key]))
    return to_run


class _Stderr:
    """Writes to whatever sys.stderr is at the time. Ray pickles the progress callback
    with its experiment, and a replaced sys.stderr (pytest's capture) does not pickle."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _trial_id(trial: Mapping[str, Any]) -> str:

    return TrialConfig.from_dict(trial).trial_id


def _run_round(study_dir, round_index, to_run, optimizers, arm_of, progress, *, identity, trainable, resources,
               retries) -> None:
    """Runs the round's trials in one Ray experiment, then records the lost ones as failed
    and feeds every trial's objective to its arm's optimizer."""
    round_identity = {**identity, "round": round_index}
    # An interrupted round raises out of run_experiment: its unfinished trials are not fed as failures.
    tune.run_experiment(study_dir, trainable, [[trial] for _, _, trial in to_run.values()],
                        name=_round_experiment_name(study_dir, round_index), trial_prefix=f"round{round_index:02d}",
                        identity=round_identity, resources=resources, retries=retries, progress=progress,
                        max_concurrent=resources.max_concurrent or len(to_run))
    _record_lost(study_dir, to_run, round_identity)
    _feed_round(study_dir, to_run, optimizers, arm_of)
    store.collect(study_dir)


def _round_experiment_name(study_dir: Any, round_index: int) -> str:
    """A fresh Ray experiment per (round, attempt): `ray_round00_0`, then `ray_round00_1`, ...

    A resumed round reruns only the trials without a finished outcome (each resumes from
    its own checkpoints), so Ray's own experiment state is never needed to continue.
    """
    taken = set(at(study_dir).children())
    attempt = 0
    while f"{tune.RAY_DIR_NAME}_round{round_index:02d}_{attempt}" in taken:
        attempt += 1
    return f"{tune.RAY_DIR_NAME}_round{round_index:02d}_{attempt}"


def _record_lost(study_dir: Any, to_run: Mapping[str, tuple[str, int, dict[str, Any]]],
                 round_identity: Mapping[str, Any]) -> None:
    """A trial whose rows never reached the storage (a lost node, Ray gave up) gets a failed
    final row with the reason, as in a grid study, and counts as missing (exit status 3)."""
    lost = store.mark_missing(study_dir, [TrialConfig.from_dict(trial) for _, _, trial in to_run.values()],
                              dict(round_identity), arm_of=arm_name)
    if lost:
        missing = tune.read_manifest(study_dir).get("trials_missing") or []
        tune.write_manifest(study_dir, trials_missing=sorted(set(missing) | set(lost)))


def _feed_round(study_dir: Any, to_run: Mapping[str, tuple[str, int, dict[str, Any]]],
                optimizers: Mapping[str, RoundOptimizer], arm_of: Mapping[str, dict[str, Any]]) -> None:
    """Feeds each of the round's trials' objective to its arm's optimizer, then saves each
    arm fed once.

    Fed after the round, from each trial's rows.parquet (the durable record): Ray pickles
    its callbacks with the experiment, so they must not hold the Ax clients; a kill
    mid-round loses nothing, since resume reads the same rows. One save per arm per round,
    not per trial (each save serializes the whole Ax client): a kill before it loses
    nothing, resume re-feeds from the rows.
    """
    fed_arms = set()
    for trial_id, (key, index, _) in to_run.items():
        optimizer = optimizers[key]
        if optimizer._record(index)["objective"] is not None:
            continue
        outcome = trial_outcome(study_dir, trial_id)
        # A trial Ray gave up on without a final row (killed worker, import error): no
        # finite score, penalized like a divergence.
        optimizer.complete(index, float("nan") if outcome is None else outcome[1])
        fed_arms.add(key)
    for key in fed_arms:
        optimizers[key].save(state_path(study_dir, arm_of[key]))
