"""Report build time over a synthetic multi-arm study.

`python -m benchmarks.report_build [--rows 10000] [--keep DIR]` writes synthetic studies
(grid + ResNet ablation, Bayesian rounds, seed reruns; not timed), builds one merged
report with `analysis.report.build_report` (timed, wall clock), and prints as its last
line `report_build ratio=X.XX seconds=S rows=N`, where ratio = seconds / 30 (the goal:
a 10,000-row report in under 30 s, ratio < 1).
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

TARGET_SECONDS = 30.0


def run(rows: int, root: pathlib.Path, seed: int = 0) -> tuple[float, int, pathlib.Path]:
    """Writes the studies under `root`, builds the report; returns (seconds, rows, index path)."""
    import pandas as pd

    from analysis.report import build_report
    from analysis.synthetic import write_synthetic_studies

    study_dirs = write_synthetic_studies(root / "studies", rows=rows, seed=seed)
    n_rows = sum(len(pd.read_parquet(d / "results.parquet", columns=["trial_id"])) for d in study_dirs)
    start = time.perf_counter()
    index = build_report(study_dirs, out_dir=root / "report")
    return time.perf_counter() - start, n_rows, index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_build", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="approximate rows of the synthetic studies")
    parser.add_argument("--keep", default=None, help="write studies and report here instead of a temporary folder")
    args = parser.parse_args(argv)
    if args.rows < 100:
        parser.error(f"--rows {args.rows} is too small; expected at least 100")
    if args.keep:
        root = pathlib.Path(args.keep)
        root.mkdir(parents=True, exist_ok=True)
        seconds, n_rows, index = run(args.rows, root)
        print(index)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, n_rows, _ = run(args.rows, pathlib.Path(tmp))
    print(f"report_build ratio={seconds / TARGET_SECONDS:.2f} seconds={seconds:.1f} rows={n_rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
