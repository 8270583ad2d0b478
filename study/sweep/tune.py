"""Studies on Ray Tune: the trainable, the searchers, resume, progress, the manifest.

Grid and random spaces are expanded (seeded) into explicit trial lists and handed to
Ray as one `grid_search` axis, so Ray schedules, retries and resumes them; Bayesian
spaces are driven by `study.sweep.bayes`'s Ax searcher. Every Ray trial runs
`study.trial.loop.run_trial` for one configuration, or for `pack` configurations that
share one compiled program, one after another in the same process.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

from search_spaces import arm_name
from study import runtime
from study.schema import MANIFEST_FILE
from study.storage import store
from study.storage.location import Location, at
from study.sweep import interrupt
from study.trial.config import TrialConfig
from study.trial.loop import run_trial
from study.trial.train import program_key

# Before anything in this process imports ray (Ray reads RAY_DEDUP_LOGS at import).
runtime.configure_ray_driver()

RAY_DIR_NAME = "ray"


@dataclasses.dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as the resources allow

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ValueError(f"--cpus-per-trial={self.cpus_per_trial} is not allowed; it must be > 0")
        if self.gpus_per_trial < 0:
            raise ValueError(f"--gpus-per-trial={self.gpus_per_trial} is not allowed; it must be >= 0")
        if self.max_concurrent < 0:
            raise ValueError(f"--max-concurrent={self.max_concurrent} is not allowed; it must be >= 0")


AUTO_PACK = "auto"
PACKS_PER_SLOT = 4  # auto packing keeps at least this many packs per concurrent slot


def auto_pack_size(total_trials: int, slots: int) -> int:
    """Configurations per Ray trial under `--pack auto`.

    Packing saves, per configuration, Ray's ~1 s of scheduling and, per pack, a compile
    (or a persistent-cache load) of the program; it costs load balance. Auto keeps at
    least PACKS_PER_SLOT packs per concurrent slot: 144 tiny trials on 2 CPUs -> at most
    18 per pack (pack_trials then balances each program's 24 or 12 trials into packs of
    12); on a 64-GPU cluster -> 1 (no packing).
    """
    return max(1, -(-int(total_trials) // (PACKS_PER_SLOT * max(1, int(slots)))))


def parse_pack(value: Any) -> int | str:
    """`--pack` value: a positive int or "auto"; anything else is a one-line ValueError."""
    if isinstance(value, str) and value.strip().lower() == AUTO_PACK:
        return AUTO_PACK
    try:
        pack = int(value)
    except (TypeError, ValueError):
        pack = 0
    if pack < 1:
        raise ValueError(f"--pack={value} is not allowed; it must be >= 1 or 'auto'")
    return pack


def concurrent_slots(resources: Resources) -> int:
    """How many trials the connected Ray cluster runs at once with these resources."""
    import ray

    available = ray.cluster_resources()
    if resources.gpus_per_trial > 0:
        slots = int(available.get("GPU", 0) // resources.gpus_per_trial)
    else:
        slots = int(available.get("CPU", 1) // resources.cpus_per_trial)
    if resources.max_concurrent:
        slots = min(slots, resources.max_concurrent)
    return max(1, slots)


def pack_trials(trials: Sequence[Mapping[str, Any]], pack: int) -> list[list[dict[str, Any]]]:
    """Groups trials that share a compiled program (same program key) into packs of at most `pack`.

    A program's trials are split into as few packs as `pack` allows, of balanced sizes
    (24 with pack 18 -> 12 + 12, not 18 + 6). Order: larger packs first, so the longest
    work starts earliest; among equal sizes, every program's first pack before any
    program's second, so concurrent slots compile different programs and a program's
    later packs find it in the persistent compilation cache.
    """

    if not isinstance(pack, int) or pack < 1:
        raise ValueError(f"--pack={pack} is not allowed; it must be >= 1 or 'auto'")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for trial in trials:
        groups.setdefault(program_key(TrialConfig.from_dict(trial)), []).append(dict(trial))
    keyed = []
    for group_index, members in enumerate(groups.values()):
        count = -(-len(members) // pack)
        size, extra = divmod(len(members), count)
        start = 0
        for copy in range(count):
            end = start + size + (1 if copy < extra else 0)
            keyed.append(((-(end - start), copy, group_index), members[start:end]))
            start = end
    return [members for _, members in sorted(keyed, key=lambda item: item[0])]


# ---------------------------------------------------------------------------- trainable
def _report_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of a results row Ray can store: numbers, flags and short strings."""
    keep = {}
    for key, value in row.items():
        if isinstance(value, bool) or isinstance(value, (int, float)) or (isinstance(value, str) and len(value) < 300):
            keep[key] = value
        elif hasattr(value, "item"):
            keep[key] = value.item()
    return keep


def trainable(params: dict[str, Any]) -> None:
    """Ray Tune function trainable: params = {"study_dir", "identity", "trials": [trial dicts],
    "keep_checkpoints"}.

    `study_dir` is the study's storage URI or shared path: the trial reads and writes
    its folder there (rows, samples, checkpoints), never on the node's own disk, so a
    retry on another node continues where the lost one stopped; a pack skips the
    configurations it already finished and resumes the one it was training at its
    last checkpoint.
    """
    from ray import tune


    runtime.configure_jax()
    study_dir = at(params["study_dir"])
    keep = params.get("keep_checkpoints", "final")
    identity = dict(params.get("identity", {}))
    trials = params["trials"]
    if isinstance(trials, Mapping):
        trials = [trials]
    for index, trial in enumerate(trials):
        config = TrialConfig.from_dict(trial)
        trial_identity = {**identity, "arm": _arm(trial), "round": int(identity.get("round", 0))}

        def report(row: dict[str, Any], *, _index=index) -> None:
            metrics = _report_metrics(row)
            metrics["pack_index"] = _index
            tune.report(metrics)

        trial_dir = study_dir / store.TRIALS_DIR / config.trial_id
        finished = store.finished_row(trial_dir)
        if finished is not None:
            # A retried or resumed pack: configurations it already finished are reported,
            # not retrained.
            report({**finished, "best_score": finished.get("score")})
            continue
        run_trial(config, trial_dir, identity=trial_identity, on_eval=report, keep_checkpoints=keep)


def _arm(trial: Mapping[str, Any]) -> str:

    return arm_name(trial)


# ---------------------------------------------------------------------------- progress
class Progress:
    """A live line per study event: trials done / running / failed, best score so far.

    Plain lines (no terminal control codes), so the same output reads well in a
    terminal and in a log file.
    """

    def __init__(self, total_configs: int, study_dir: "pathlib.Path | str | Location", stream=None,
                 on_change=None):
        self.on_change = on_change  # called with the ended-configuration count after each line (live report)
        self.total = total_configs
        self.study_dir = at(study_dir)
        self.stream = stream
        self.started = time.time()
        self.best: float | None = None
        self.metric = "score"
        self.done = 0
        self.failed = 0
        self.diverged = 0
        self.running: set[str] = set()
        # Configurations of a pack finished so far, per Ray trial: a pack of 18 counts
        # its configurations one by one, not all at its end.
        self.finished_in: dict[str, set[int]] = {}

    def result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        self.running.add(trial_id)
        score = result.get("score")
        if isinstance(score, (int, float)) and score == score:
            if self.best is None or score < self.best:
                self.best = float(score)
        index = int(result.get("pack_index", 0) or 0)
        finished = self.finished_in.setdefault(trial_id, set())
        steps, length = result.get("step"), result.get("train_steps")
        ended = bool(result.get("diverged")) or (
            isinstance(steps, (int, float)) and isinstance(length, (int, float)) and steps >= length)
        if ended and index not in finished:
            finished.add(index)
            self.done += 1
            if result.get("diverged"):
                self.diverged += 1
        self.print()

    def finished(self, trial_id: str, configs: int) -> None:
        self.running.discard(trial_id)
        self.done += max(0, configs - len(self.finished_in.pop(trial_id, ())))
        self.print()

    def errored(self, trial_id: str, configs: int) -> None:
        self.running.discard(trial_id)
        self.failed += max(0, configs - len(self.finished_in.pop(trial_id, ())))
        self.print()

    def print(self) -> None:
        elapsed = time.time() - self.started
        best = "n/a" if self.best is None else f"{self.best:.3f}"
        print(
            f"[study {self.study_dir.name}] {elapsed:6.0f}s  configs done {self.done}/{self.total}  "
            f"running {len(self.running)}  diverged {self.diverged}  failed {self.failed}  best score {best}",
            file=self.stream or sys.stderr, flush=True,
        )
        if self.on_change is not None:
            self.on_change(self.done + self.failed)


def _configs_in(trial) -> int:
    configs = trial.config.get("trials", [])
    return len(configs) if isinstance(configs, list) else 1


def _progress_callback(progress: Progress):
    from ray.tune import Callback

    class _Callback(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            progress.result(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial.trial_id, _configs_in(trial))
            store.collect(progress.study_dir)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.errored(trial.trial_id, _configs_in(trial))
            store.collect(progress.study_dir)

    return _Callback()


# ---------------------------------------------------------------------------- manifest
def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ray", "ax-platform", "numpy", "pandas",
                 "pyarrow", "gan-study"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_commit() -> str:
    try:
        root = pathlib.Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip()
        return commit + ("+dirty" if dirty.stdout.strip() else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cores": os.cpu_count(), "system": platform.system()}
    try:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
        info["jax_backend"] = jax.default_backend()
    except Exception:  # the manifest must not fail a study
        pass
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def read_manifest(study_dir: "pathlib.Path | str | Location") -> dict[str, Any]:
    path = at(study_dir) / MANIFEST_FILE
    return path.read_json() if path.exists() else {}


def write_manifest(study_dir: "pathlib.Path | str | Location", **fields: Any) -> dict[str, Any]:
    manifest = read_manifest(study_dir)
    manifest.update(fields)
    (at(study_dir) / MANIFEST_FILE).write_json(manifest)
    return manifest


def new_manifest(study_dir: "pathlib.Path | str | Location", *, space: str, search: str, arms: list[dict], trials_total: int,
                 seed: int, argv: Sequence[str], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return write_manifest(
        study_dir,
        study=at(study_dir).name, space=space, search=search, arms=arms, trials_total=trials_total, seed=seed,
        argv=list(argv), command=" ".join(["python", "-m", "study.run", *argv]),
        versions=_versions(), git_commit=_git_commit(), hardware=_hardware(),
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **(extra or {}),
    )


# ---------------------------------------------------------------------------- running
def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Trial processes inherit the driver's environment; PYTHONPATH makes the project
    # importable in them even when it is used from a checkout.
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}}
    for name in ("GAN_STUDY_CACHE", "GAN_STUDY_DATA", "FID_INCEPTION_WEIGHTS", "JAX_COMPILATION_CACHE_DIR",
                 "XLA_FLAGS", "JAX_PLATFORMS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "GOOGLE_APPLICATION_CREDENTIALS"):
        if name in os.environ:
            runtime_env["env_vars"][name] = os.environ[name]
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, runtime_env=runtime_env, include_dashboard=False, log_to_driver=True,
                 configure_logging=True, logging_level="WARNING")


def experiment_name(study_dir: "pathlib.Path | str | Location", base: str = RAY_DIR_NAME) -> str:
    """A Ray experiment folder name not used yet in the study: `ray`, then `ray_1`, ...

    A resumed study starts a fresh Ray experiment instead of `Tuner.restore`, which
    unpickles `ray/tuner.pkl` (a doctored study folder would run code); the study's own
    records (rows, checkpoints) say what is left to do.
    """
    study = at(study_dir)
    taken = set(study.children())
    if base not in taken:
        return base
    attempt = 1
    while f"{base}_{attempt}" in taken:
        attempt += 1
    return f"{base}_{attempt}"


def run_grid(
    study_dir: "pathlib.Path | str | Location",
    trials: Sequence[Mapping[str, Any]],
    *,
    identity: Mapping[str, Any],
    resources: Resources = Resources(),
    pack: int | str = 1,
    retries: int = 2,
    address: str | None = None,
    resume: bool = False,
    on_progress: Any = None,
    keep_checkpoints: str = "final",
) -> None:
    """Runs an explicit list of trials (grid, random, rerun) through Ray Tune.

    `study_dir` is the study's storage (a local or shared path, or a URI such as
    s3://bucket/study); Ray's experiment state goes to the same storage.
    """
    study = at(study_dir)
    init_ray(address)
    packs = _packs(study, trials, pack, resources)
    if resume:
        store.repair_from_results(study)
    progress = Progress(len(trials), study, on_change=on_progress)
    name = experiment_name(study)
    if resume:
        print(f"[study {study.name}] resuming from the study's rows and checkpoints (Ray experiment {name})",
              file=sys.stderr, flush=True)
    run_experiment(study, trainable, packs, name=name, trial_prefix="pack", identity=identity,
                   resources=resources, retries=retries, progress=progress,
                   max_concurrent=resources.max_concurrent or None, keep_checkpoints=keep_checkpoints)
    store.collect(study)


def _packs(study: Location, trials: Sequence[Mapping[str, Any]], pack: int | str,
           resources: Resources) -> list[list[dict[str, Any]]]:
    """The trials packed per `--pack` (auto: sized to the connected cluster), announced in one line."""
    size = auto_pack_size(len(trials), concurrent_slots(resources)) if pack == AUTO_PACK else pack
    packs = pack_trials(trials, size)
    limit = f"{AUTO_PACK}: at most {size}" if pack == AUTO_PACK else size
    print(f"[study {study.name}] {len(trials)} configurations in {len(packs)} Ray trial(s) of "
          f"{min(map(len, packs), default=0)}-{max(map(len, packs), default=0)} (--pack {limit})",
          file=sys.stderr, flush=True)
    return packs


def run_experiment(
    study_dir: "pathlib.Path | str | Location",
    function: Any,
    groups: list[list[dict[str, Any]]],
    *,
    name: str,
    trial_prefix: str,
    identity: Mapping[str, Any],
    resources: Resources,
    retries: int,
    progress: Progress,
    max_concurrent: int | None,
    keep_checkpoints: str | None = None,
) -> None:
    """One Ray Tune experiment, the only way studies launch Ray trials (grid and Bayesian rounds).

    Each of `groups` (lists of trial dicts) is one Ray trial of `function` (a trainable
    with `trainable`'s params contract), named `{trial_prefix}_{Ray trial id}`, with
    `resources` per trial and up to `retries` retries, reporting to `progress`. Ray's
    experiment state goes to the study's own storage, in folder `name`. `keep_checkpoints`
    reaches the trainable only when given (its default otherwise). A stop signal under
    study.run's guard lets Ray save, then raises interrupt.Interrupted.
    """
    from ray import tune

    study = at(study_dir)
    param_space: dict[str, Any] = {"study_dir": study.uri, "identity": dict(identity)}
    if keep_checkpoints is not None:
        param_space["keep_checkpoints"] = keep_checkpoints
    param_space["trials"] = tune.grid_search(groups)
    tuner = tune.Tuner(
        tune.with_resources(function, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            trial_name_creator=lambda t: f"{trial_prefix}_{t.trial_id}",
            trial_dirname_creator=lambda t: f"{trial_prefix}_{t.trial_id}",
            # A reused worker process keeps JAX imported and its compiled programs
            # in memory: trials of the same arm then start without compiling.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=study.uri,
            failure_config=tune.FailureConfig(max_failures=retries),
            callbacks=[_progress_callback(progress)],
            verbose=0,
        ),
    )
    with interrupt.tune_fit():
        tuner.fit()
