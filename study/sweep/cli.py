"""`python -m study.run`: run a study (a search space) through Ray Tune, then build its report.

    python -m study.run --space table1                       # the paper's grid, embedded data, tiny scale
    python -m study.run --space table1 --dry-run [--json]    # the trial table / one TrialConfig dict per line
    python -m study.run --space table1 --arms normalization=spectral,penalty=gp
    python -m study.run --resume studies/table1-...          # continue a killed study
    python -m study.run --space rerun --from studies/table1-... --top 5 --seeds 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import sys
from typing import Any, Sequence

from study import runtime

# First, before any import of ray in this driver: Ray reads its log settings at import.
runtime.configure_ray_driver()

import search_spaces  # noqa: E402
from analysis.report import build_report  # noqa: E402
from search_spaces import rerun  # noqa: E402
from study import data  # noqa: E402
from study.schema import MANIFEST_FILE  # noqa: E402
from study.storage import location as location_module  # noqa: E402
from study.storage import store  # noqa: E402
from study.storage.location import Location, StorageError, at  # noqa: E402
from study.storage.paths import check_output_dir, disk_full_message  # noqa: E402
from study.sweep import bayes, interrupt, tune  # noqa: E402
from study.sweep.live_report import DEFAULT_EVERY, LiveReport  # noqa: E402
from study.sweep.tune import Resources, parse_pack  # noqa: E402
from study.trial import config as config_module  # noqa: E402
from study.trial.config import ConfigError, TrialConfig, parse_assignments  # noqa: E402


class UsageError(ValueError):
    """A bad command-line value (one line, printed without a traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Run a GAN hyperparameter study (a search space) through Ray Tune and build its report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="spaces:\n" + "\n".join(f"  {n:<14}{search_spaces.get(n).description}" for n in search_spaces.names()),
    )
    parser.add_argument("--space", default="table1", help="search space name (default: table1)")
    parser.add_argument("--arms", default=None, help="filter arms, e.g. loss=ns,normalization=spectral|layer")
    parser.add_argument("--dataset", default=None, help="dataset(s), comma-separated (default: digits)")
    parser.add_argument("--architecture", default=None,
                        help="architecture for arms that do not fix one (default: sndcgan)")
    parser.add_argument("--scale", default=None, help="tiny | small | paper (default: tiny)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fix any TrialConfig field for every trial (repeatable), e.g. --set train_steps=600")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per setting: 0..N-1 (default: 1); with --space rerun, new seeds per "
                             "chosen setting (default: 3)")
    parser.add_argument("--from", dest="source", default=None, metavar="STUDY_DIR",
                        help="with --space rerun: the finished study whose best settings are re-trained")
    parser.add_argument("--top", type=int, default=None,
                        help="with --space rerun: best settings per arm of the source study (default: 5)")
    parser.add_argument("--out", default=None,
                        help="where the study lives: a folder, an NFS path, or a URI (s3://bucket/study, "
                             "gs://...); on a multi-node cluster every node must reach it (default: a new "
                             "folder under studies/)")
    parser.add_argument("--dry-run", action="store_true", help="print the trial table and count, run nothing")
    parser.add_argument("--json", action="store_true", help="with --dry-run: one TrialConfig JSON per line")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional GPUs allowed")
    parser.add_argument("--max-concurrent", type=int, default=0, help="0: as many as resources allow")
    parser.add_argument("--pack", default="auto",
                        help="configurations trained one after another per Ray trial, sharing one compiled "
                             "program and process: N >= 1, or auto (default: enough packs to keep every "
                             "concurrent slot busy, at least 4 per slot)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed trial before it is recorded as failed")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    parser.add_argument("--storage", default=None, metavar="URI",
                        help="old name of --out (a study has one storage); give --out instead")
    parser.add_argument("--keep-checkpoints", default="final", choices=("final", "none", "all"),
                        help="checkpoints a trial keeps once it ends (while it runs: its latest and its "
                             "best); default final")
    parser.add_argument("--resume", default=None, metavar="STUDY_DIR", help="continue a killed study (folder or URI)")
    parser.add_argument("--no-report", action="store_true", help="skip building the analysis report")
    parser.add_argument("--report-every", type=int, default=None, metavar="N",
                        help="rebuild STUDY_DIR/report/index.html every N ended trials while the study runs "
                             "(default 36; 0: only at the end)")
    return parser


def _parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """The --set KEY=VALUE pairs: TrialConfig fields, each given once."""
    try:
        return parse_assignments(pairs, flag="--set", fields=TrialConfig.field_names())
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _resume_argv(study_dir: Location) -> list[str]:
    """The original command-line arguments recorded in a study's manifest.json."""
    manifest_path = study_dir / "manifest.json"
    if not manifest_path.exists():
        raise UsageError(f"--resume {study_dir}: no manifest.json there; is it a study directory?")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"--resume {study_dir}: {manifest_path} is not readable JSON ({error})") from None
    original = manifest.get("argv") if isinstance(manifest, dict) else None
    if not isinstance(original, list) or not all(isinstance(a, str) for a in original):
        raise UsageError(f"--resume {study_dir}: {manifest_path} records no command line ('argv': a list of "
                         f"strings); it was not written by study.run")
    return original


def _check_out(out: str, resuming: bool) -> None:
    """A new study goes into a new or empty folder: one holding other files (someone's
    results.parquet or report/) would have them overwritten. Paths that cannot be a
    writable folder are refused before anything starts."""

    try:
        remote = not at(out).is_local
    except StorageError:
        remote = False  # check_output_dir's line names the flag and what is wrong
    if remote:  # remote storage: study.storage.location checks it (check_reachable)
        return
    try:
        study_dir = check_output_dir(out, "--resume" if resuming else "--out")
    except ValueError as error:
        raise UsageError(str(error)) from None
    if resuming or not study_dir.is_dir():
        return
    if (study_dir / "manifest.json").exists():
        raise UsageError(f"{study_dir} already holds a study; use --resume {study_dir} or another --out")
    if any(study_dir.iterdir()):
        raise UsageError(f"--out {study_dir}: the folder is not empty and holds no study (no manifest.json); "
                         f"give a new or empty folder")


def _check_datasets(trials: Sequence[dict[str, Any]], address: str | None) -> None:
    """Prepared datasets are opened (memory maps, no reading) before Ray starts, so a
    missing one is one line now rather than a failed trial per configuration. On a
    cluster (--address / $RAY_ADDRESS) the workers' data is what counts: not checked."""
    import os

    if address or os.environ.get("RAY_ADDRESS"):
        return

    for name, split in sorted({(t["dataset"], s) for t in trials for s in ("train", t["fid_split"])}):
        try:
            data.load(name, split)
        except data.DataError as error:
            raise UsageError(str(error)) from None


def _check_address(address: str | None) -> None:
    """An unreachable `--address HOST:PORT` fails in seconds (ray.init would retry
    "Failed to connect to GCS" for minutes)."""
    import os
    import socket

    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address {address!r} is not HOST:PORT (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise UsageError(f"--address {address}: no Ray head answers there ({error.strerror or error}); "
                         f"start one with `ray start --head --port {port}` or drop --address") from None


DEFAULTS = {"dataset": "digits", "architecture": "sndcgan", "scale": "tiny"}


def plan_trials(args: argparse.Namespace) -> tuple[search_spaces.Space, list[dict[str, Any]], list[dict[str, Any]]]:
    """(space, arms, trial dicts) of a grid/random/rerun space, validated as TrialConfigs."""

    try:
        space = search_spaces.get(args.space)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if space.search == "rerun":
        return _plan_rerun(args, space)
    for name in ("source", "top"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('source', 'from')} applies only to --space rerun, not {space.name!r}")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    seeds = 1 if args.seeds is None else args.seeds
    for name, values in (("scale", [args.scale]), ("dataset", args.dataset.split(",")),
                         ("architecture", [args.architecture])):
        allowed = config_module.choices(name)
        for value in values:
            if value not in allowed:
                raise UsageError(f"--{name} {value!r} is unknown; choose one of: {', '.join(allowed)}")
    if seeds < 1:
        raise UsageError(f"--seeds={seeds} is not allowed; it must be >= 1")
    try:
        arm_filter = search_spaces.parse_arm_filter(args.arms)
    except ValueError as error:
        raise UsageError(str(error)) from None
    trials: list[dict[str, Any]] = []
    arms: list[dict[str, Any]] = []
    for dataset in args.dataset.split(","):
        base = {"dataset": dataset, "scale": args.scale, "architecture": args.architecture}
        try:
            arms += search_spaces.select_arms(space, arm_filter, base)
            points = [] if space.search == "bayesian" else search_spaces.expand(space, base, arm_filter)
        except ValueError as error:
            raise UsageError(str(error)) from None
        for point in points:
            for seed in range(seeds):
                trials.append({**point, "seed": seed})
    return space, arms, _resolve(space, trials, _parse_overrides(args.overrides))


def _resolve(space: search_spaces.Space, trials: list[dict[str, Any]], overrides: dict[str, str]) -> list[dict]:
    """The space's trials with the --set overrides, as TrialConfig dicts; trials that an
    override made identical (e.g. --set learning_rate=1e-3 on Table 1's lr axis) run once."""
    resolved, seen = [], set()
    for trial in trials:
        raw = {**trial, **overrides}
        try:
            config = TrialConfig.from_dict(raw, coerce_strings=True)
        except ValueError as error:
            raise UsageError(f"space {space.name!r}: {error}") from None
        if config.trial_id in seen:
            continue
        seen.add(config.trial_id)
        resolved.append(config.to_dict())
    if len(resolved) < len(trials):
        print(f"--set {' '.join(f'{k}={v}' for k, v in overrides.items())} made {len(trials) - len(resolved)} of the "
              f"{len(trials)} trials of space {space.name!r} identical to others; {len(resolved)} distinct trials run",
              file=sys.stderr)
    return resolved


def _plan_rerun(args: argparse.Namespace, space: search_spaces.Space):
    """The rerun space: the best `--top` settings per arm of `--from`, with `--seeds` new seeds."""

    if args.source is None:
        raise UsageError("--space rerun needs --from STUDY_DIR (a finished study)")
    for name in DEFAULTS:
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} does not apply to --space rerun (the source study fixes it); "
                             f"use --set {name}=VALUE to change it")
    top = space.top if args.top is None else args.top
    seeds = space.rerun_seeds if args.seeds is None else args.seeds
    try:
        arm_filter = search_spaces.parse_arm_filter(args.arms)
        results = rerun.load_results(args.source)
        trials, settings = rerun.rerun_trials(results, TrialConfig.field_names(), top, seeds, arm_filter)
    except ValueError as error:
        raise UsageError(str(error)) from None
    args.rerun_of = {"source": at(args.source).uri, "top": top, "seeds": seeds,
                     "settings": settings}
    return space, rerun.arms_of(settings), _resolve(space, trials, _parse_overrides(args.overrides))


def print_dry_run(space: search_spaces.Space, arms: list[dict], trials: list[dict], as_json: bool) -> None:
    if as_json:
        for trial in trials:
            print(json.dumps(trial, sort_keys=True))
        return
    if space.search == "bayesian":
        print(f"space {space.name}: Bayesian, {len(arms)} arm(s) x {space.rounds} rounds x {space.round_size} "
              f"= {len(arms) * space.rounds * space.round_size} trials")
        for arm in arms:
            print("  arm", search_spaces.arm_name(arm))
        return
    import pandas as pd

    frame = pd.DataFrame(trials)
    varying = [c for c in frame.columns if frame[c].astype(str).nunique() > 1] or ["dataset"]
    columns = [c for c in ("architecture", "loss", "normalization", "penalty") if c in frame] + \
              [c for c in varying if c not in ("architecture", "loss", "normalization", "penalty")]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(frame[columns].to_string())
    print(f"{len(trials)} trials in space {space.name} ({space.search}); fixed: scale={trials[0]['scale']}, "
          f"train_steps={trials[0]['train_steps']}, eval_every={trials[0]['eval_every']}")


def default_study_dir(space: str) -> pathlib.Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("studies") / f"{space}-{stamp}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args, space, arms, trials, resources = _prepare(parser, args, argv)
    except (UsageError, ConfigError, StorageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_dry_run(space, arms, trials, args.json)
        return 0

    study_dir = at(args.out) if args.out else at(default_study_dir(space.name))
    try:
        with interrupt.study_guard():
            return run_study(args, argv, space, arms, trials, resources, study_dir)
    except (interrupt.Interrupted, KeyboardInterrupt) as stop:
        return _stopped(study_dir, stop)
    except OSError as error:
        message = disk_full_message(error, study_dir)
        if message is None:
            raise
        print(f"error: {message}; free space there, then `python -m study.run --resume {study_dir}`",
              file=sys.stderr)
        return 1


def _prepare(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]):
    """(args, space, arms, trials, resources) of a command line, checked as far as can be
    before Ray starts; bad values raise one-line errors. With --resume the study's recorded
    arguments come first, then the ones given now."""
    if args.storage is not None:
        # One storage per study: --storage is --out's old name.
        if args.out is not None and at(args.out) != at(args.storage):
            raise UsageError(f"--storage {args.storage} differs from --out {args.out}; a study has one "
                             f"storage now: give --out URI only")
        args.out, args.storage = args.storage, None
    if args.resume:
        study_dir = at(args.resume)
        original = _resume_argv(study_dir)
        args = parser.parse_args([*original, *argv])
        args.storage = None
        args.out = study_dir.uri
    space, arms, trials = plan_trials(args)

    resources = Resources(args.cpus_per_trial, args.gpus_per_trial, args.max_concurrent)

    args.pack = parse_pack(args.pack)
    if args.retries < 0:
        raise UsageError(f"--retries={args.retries} is not allowed; it must be >= 0")
    if args.report_every is not None and args.report_every < 0:
        raise UsageError(f"--report-every={args.report_every} is not allowed; it must be >= 0 (0: only at the end)")
    if not args.dry_run:
        if args.out is not None:
            _check_out(args.out, bool(args.resume))
        _check_datasets(trials, args.address)
        _check_address(args.address)
    return args, space, arms, trials, resources


EXIT_MISSING = 3  # trials that left no final row (lost node, Ray gave up): never exit 0


def _stopped(study_dir: Location, stop: BaseException) -> int:
    """After SIGINT / SIGTERM: Ray shut down, results so far collected, the manifest marked
    interrupted (not finished), and the last line names the command that continues."""
    import signal


    signum = stop.signum if isinstance(stop, interrupt.Interrupted) else int(signal.SIGINT)
    name = signal.Signals(signum).name
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # now, so no Ray output follows the last line
    except Exception:  # noqa: BLE001 - shutting down must not hide the last line
        pass
    if not (study_dir / MANIFEST_FILE).exists():
        print(f"interrupted by {name} before the study started; nothing to resume", file=sys.stderr, flush=True)
        return 128 + signum
    try:
        store.collect(study_dir)
        tune.write_manifest(study_dir, interrupted=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            interrupted_by=name)
    except (OSError, ValueError) as error:  # the stop must still end in its one line
        print(f"warning: could not record the interruption in {study_dir}: {error}", file=sys.stderr)
    print(f"interrupted by {name}; continue with: python -m study.run --resume {study_dir}",
          file=sys.stderr, flush=True)
    return 128 + signum


def run_study(args, argv, space, arms, trials, resources, study_dir: Location | None = None) -> int:
    import time

    study_dir = study_dir or (at(args.out) if args.out else at(default_study_dir(space.name)))
    resuming = bool(args.resume)
    if not resuming and (study_dir / "manifest.json").exists():
        print(f"error: {study_dir} already holds a study; use --resume {study_dir} or another --out",
              file=sys.stderr)
        return 2
    try:
        # Ray first: a cluster that cannot be reached leaves no manifest behind (which would
        # make the same --out refused next time).
        tune.init_ray(args.address)
        interrupt.reinstall()  # ray.init set its own SIGTERM handler
        study_dir.mkdir()
        location_module.check_reachable(study_dir)
    except StorageError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    if not resuming:
        extra = {"rerun_of": args.rerun_of} if getattr(args, "rerun_of", None) else None
        tune.new_manifest(study_dir, space=space.name, search=space.search, arms=arms,
                          trials_total=len(trials) if space.search != "bayesian" else len(arms) * space.rounds * space.round_size,
                          seed=space.seed, argv=argv, extra=extra)
    print(f"[study {study_dir.name}] {space.name}: {len(trials) if trials else 'Bayesian'} trials -> {study_dir}",
          file=sys.stderr, flush=True)
    started = time.time()
    identity = {"study": study_dir.name, "search": space.search, "round": 0}
    live = None if args.no_report else _announce_report(args, space, study_dir)
    try:
        missing = _search(args, space, arms, trials, resources, study_dir, identity, live)
    except bayes.BayesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if live is not None:
        live.finish()
    return _finish(args, space, trials, study_dir, started, missing)


def _announce_report(args: argparse.Namespace, space: search_spaces.Space, study_dir: Location) -> LiveReport | None:
    """Prints where the report will be (open it while the study runs; it is also the last
    line at the end); returns the live report that rebuilds it while trials end, if any."""
    every = DEFAULT_EVERY if args.report_every is None else args.report_every
    live = None
    # Bayesian studies build it at the end only (their rounds have their own progress); a
    # study in remote storage too (its report is built from a local copy at the end).
    if every and space.search != "bayesian" and study_dir.is_local:
        live = LiveReport(study_dir.local_path, every)
    when = f"rebuilt every {every} ended trials and at the end" if live else "built at the end"
    where = (study_dir.local_path / "report" / "index.html").resolve() if study_dir.is_local else study_dir.uri
    print(f"report: {where} ({when})", flush=True)
    return live


def _search(args, space, arms, trials, resources, study_dir: Location, identity: dict[str, Any],
            live: LiveReport | None) -> list[str]:
    """Runs the space's trials (Bayesian rounds, or the planned grid / random / rerun list);
    returns the ids of trials that left no final row, now recorded as failed."""
    if space.search == "bayesian":
        bayes.run_bayesian(study_dir, space, arms, identity=identity, resources=resources, args=args)
        # Lost trials were recorded as failed and fed to their arm's optimizer as failures.
        return list(tune.read_manifest(study_dir).get("trials_missing") or [])
    tune.run_grid(study_dir, trials, identity=identity, resources=resources, pack=args.pack,
                  retries=args.retries, address=args.address, resume=bool(args.resume),
                  keep_checkpoints=args.keep_checkpoints, on_progress=live.update if live else None)
    # Every launched trial ends with a final row: one whose rows never reached the
    # storage (or stopped without a final row) is recorded as failed, with the reason.
    return store.mark_missing(study_dir, [TrialConfig.from_dict(t) for t in trials], identity,
                              arm_of=search_spaces.arm_name)


def _finish(args, space, trials, study_dir: Location, started: float, missing: list[str]) -> int:
    """Records the finished study in its manifest, prints the summary and builds the report;
    the exit status says whether trials went missing."""
    import time

    frame = store.collect(study_dir)
    manifest = tune.read_manifest(study_dir)
    wall = float(manifest.get("wall_time_s", 0.0)) + time.time() - started
    disk = store.disk_use(study_dir)
    tune.write_manifest(study_dir, finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        wall_time_s=wall, disk_bytes_per_trial=disk, disk_bytes=sum(disk.values()),
                        keep_checkpoints=args.keep_checkpoints, trials_missing=missing,
                        references=store.reference_points(frame), interrupted=None, interrupted_by=None)
    summary = _summary(frame)
    if missing:
        planned = len(trials) if trials else int(tune.read_manifest(study_dir).get("trials_total") or 0)
        retry = ("their optimizers counted them as failures" if space.search == "bayesian"
                 else f"--resume {study_dir} retries them")
        summary += (f"; MISSING {len(missing)} of {planned} trial(s) (recorded as failed: "
                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); {retry}")
    print(summary, file=sys.stderr)
    if not args.no_report:
        index = build_report([study_dir.uri])
        print(index)
    return EXIT_MISSING if missing else 0


def _summary(frame) -> str:
    if frame.empty or "score" not in frame:
        return "no results"
    final = frame[frame["final"]]
    counts = final["status"].value_counts().to_dict()
    best = frame.loc[frame["score"].idxmin()] if frame["score"].notna().any() else None
    text = f"trials: {len(final)} ({', '.join(f'{k} {v}' for k, v in counts.items())})"
    if best is not None:
        metric = "fid" if frame["fid"].notna().any() else "fid_domain"
        text += (f"; best {metric} {best['score']:.3f} at step {int(best['step'])}: {best['arm']} lr={best['learning_rate']:g} "
                 f"lambda={best['penalty_weight']:g} beta1={best['beta1']:g} beta2={best['beta2']:g} "
                 f"n_dis={int(best['discriminator_steps'])}")
    return text


if __name__ == "__main__":
    sys.exit(main())
