"""Ray sweep overhead: a study's wall time vs the sum of its trials' own times.

    python -m benchmarks.sweep_overhead [--quick] [--seeds N] [--pack K]

Runs `python -m study.run --space smoke --seeds N` (2 learning rates x N seeds; N = 12
gives 24 smoke-sized trials, --quick N = 2 gives 4) into a fresh directory with a cold
persistent compilation cache, timing the whole command (Ray start, scheduling, worker
processes, imports, compilation, training, evaluation, results merge; no report build).
From results.parquet, per trial, its last row's `wall_time_s` (the trial's own wall
clock inside `run_trial`, compilation included) and `device_seconds`.

    overhead = 1 - sum(trial wall_time_s) / (study wall x concurrency)

concurrency = min(CPUs / cpus-per-trial, trials) = 2 on the 2-core machine: the fraction
of the machine's trial-slots not spent inside a trial (Ray, process start, imports, idle
slots at the tail). ratio = overhead. Also printed: the same with device_seconds
(training + evaluation only, no compilation), and the per-trial overhead in seconds.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks.common import parser, result_line


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds per smoke setting (default 12 -> 24 trials)")
    p.add_argument("--pack", type=int, default=1, help="configs per Ray trial (study.run --pack)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs the study may use (concurrency with 1 CPU per trial)")
    args = p.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 12)
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = pathlib.Path(tmp)
        env = dict(os.environ, GAN_STUDY_CACHE=str(root / "cache"), RAY_DEDUP_LOGS="0")
        env["JAX_COMPILATION_CACHE_DIR"] = str(root / "cache" / "jax_compilation")
        env.pop("RAY_ADDRESS", None)
        command = [sys.executable, "-m", "study.run", "--space", "smoke", "--seeds", str(seeds),
                   "--out", str(root / "study"), "--no-report", "--pack", str(args.pack),
                   "--max-concurrent", str(args.cpus)]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"study.run failed with exit status {done.returncode}")
        frame = pd.read_parquet(root / "study" / "results.parquet")
    last = frame.sort_values("step").groupby("trial_id").tail(1)
    trials = len(last)
    concurrency = min(args.cpus, max(1, -(-trials // args.pack)))
    trial_wall = float(last["wall_time_s"].sum())
    trial_device = float(last["device_seconds"].sum())
    overhead = 1.0 - trial_wall / (wall * concurrency)
    overhead_device = 1.0 - trial_device / (wall * concurrency)
    per_trial = (wall * concurrency - trial_wall) / trials
    print(f"{trials} trials in {wall:.1f} s wall (concurrency {concurrency}); trials' own wall {trial_wall:.1f} s, "
          f"device {trial_device:.1f} s; overhead {overhead:.1%} ({per_trial:.1f} s per trial)", flush=True)
    print(result_line("sweep_overhead", overhead, trials=trials, wall_s=wall, concurrency=concurrency,
                      sum_trial_wall_s=trial_wall, sum_device_s=trial_device, overhead_device=overhead_device,
                      overhead_s_per_trial=per_trial, pack=args.pack))


if __name__ == "__main__":
    main()
