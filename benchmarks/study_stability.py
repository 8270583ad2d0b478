"""Study stability: do two runs of the default study with different seeds rank the arms alike?

    python -m benchmarks.study_stability [--quick] [--keep DIR] [--seeds 0,1]
    python -m benchmarks.study_stability --from STUDY_A,STUDY_B   # compare two finished studies

Runs `python -m study.run --space table1 --set seed=S --no-report` once per seed (the
default study: 8 arms, 144 trials; about half an hour each on the 2-core machine), reads
both results tables, and compares the arms' top-5% median scores (the statistic of the
paper's boxes): Spearman's rank correlation of the 8 arms' medians, with a 95%
percentile-bootstrap interval (trials resampled within every arm of both runs), and each
arm's median with its own bootstrap interval per run. Goal: rho >= 0.8.

--quick: a toy size for the tests (2 arms, 12 settings each, 10 D steps, 100 evaluation
samples): it checks that the pipeline runs, its rho means nothing.

Last line: `study_stability spearman=R low=L high=H ratio=R/0.8 arms=A trials=N+M`.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks.common import parser

GOAL = 0.8
QUICK_ARGS = ["--arms", "normalization=spectral|none,penalty=none", "--set", "train_steps=10", "--set", "eval_every=10",
              "--set", "eval_samples=100"]


def run_study(out: pathlib.Path, seed: int, quick: bool) -> float:
    """Runs the default study (or the quick toy) with every trial's seed set to `seed`; returns its wall seconds."""
    command = [sys.executable, "-m", "study.run", "--space", "table1", "--set", f"seed={seed}", "--out", str(out),
               "--no-report", *(QUICK_ARGS if quick else [])]
    env = dict(os.environ, RAY_DEDUP_LOGS="0")
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"study.run (seed {seed}) failed with exit status {done.returncode}")
    return time.perf_counter() - start


def trials_of(study_dir: pathlib.Path):
    from analysis import stats
    from analysis.load import load_studies

    rows = load_studies([study_dir]).rows
    metric = stats.choose_score_metric(rows)
    rows, _ = stats.split_by_protocol(rows, metric)
    return stats.trial_table(rows, metric), metric


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1", help="the two trial seeds, comma-separated (default 0,1)")
    p.add_argument("--keep", default=None, help="write both studies under this folder instead of a temporary one")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--from", dest="studies", default=None, metavar="STUDY_A,STUDY_B",
                   help="compare two finished studies (e.g. the main job and a --set seed=1 rerun) instead of running them")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds {args.seeds!r} is not two integers, e.g. 0,1")
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        p.error(f"--seeds {args.seeds!r} must name two different seeds, e.g. 0,1")
    if args.bootstrap < 1:
        p.error(f"--bootstrap {args.bootstrap} must be >= 1")
    from analysis import stats

    given = [pathlib.Path(d) for d in args.studies.split(",")] if args.studies else None
    if given is not None and (len(given) != 2 or not all((d / "results.parquet").is_file() for d in given)):
        p.error(f"--from {args.studies!r} must name two finished study folders (each with results.parquet)")
    with tempfile.TemporaryDirectory(prefix="bench_stability_") as tmp:
        root = pathlib.Path(args.keep) if args.keep else pathlib.Path(tmp)
        dirs = given or [root / f"seed{seed}" for seed in seeds]
        for seed, out in zip(seeds, [] if given else dirs):
            seconds = run_study(out, seed, args.quick)
            print(f"study seed={seed}: {seconds:.0f} s -> {out}", file=sys.stderr, flush=True)
        (trials_a, metric), (trials_b, _) = trials_of(dirs[0]), trials_of(dirs[1])
    rho, (low, high), table = stats.arm_rank_stability(trials_a, trials_b, fraction=0.05, n_boot=args.bootstrap)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(f"top-5% median {metric} per arm, seed {seeds[0]} (a) vs seed {seeds[1]} (b), 95% bootstrap intervals:")
        print(table.sort_values("median_a").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"study_stability spearman={rho:.3f} low={low:.3f} high={high:.3f} ratio={rho / GOAL:.2f} "
          f"arms={len(table)} trials={len(trials_a)}+{len(trials_b)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
