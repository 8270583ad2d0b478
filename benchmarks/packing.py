"""Packed trials (k configs, one process, one compiled program) vs k separate trial processes.

    python -m benchmarks.packing [--quick] [--ks 1,2,4,8] [--steps N]

k trials of one arm (SNDCGAN, NS, SN, no penalty, tiny scale, digits) that differ only in
traced hyperparameters (lr, beta1, beta2, lambda). Whole-trial throughput = k / wall
seconds of everything (process start, imports, compilation, training, evaluation):
- packed: ONE fresh process runs `study.trial.loop.run_trial` for the k configs one after
  another (what `python -m study.run --pack K` does in a Ray worker);
- separate: k fresh `python -m study.trial ...` processes one after another.
Each side is run twice: cold (its own empty persistent compilation cache: a first study
on a new machine, or workers without a shared cache) and warm (a persistent cache that an
earlier process filled: the steady state of a study on one machine). Both sides run the
trials one at a time, so the ratios isolate per-process costs.
ratio = throughput(packed k) / throughput(separate k) at the largest k, both warm (like
for like, the conservative figure; without warm runs, both cold). Packed rows must be
bit-identical to the separate runs' rows
(identical=1 in the line; the test suite checks this too).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks.common import parser, result_line

ARM = {"dataset": "digits", "architecture": "sndcgan", "loss": "ns", "normalization": "spectral",
       "penalty": "none", "scale": "tiny"}
# Rows compared for bit-identity: training and evaluation numbers, not timings.
COMPARED = ("d_loss", "g_loss", "fid_domain", "kid_domain", "score")


def configs(k: int, steps: int) -> list[dict]:
    """k configs of ARM differing in traced hyperparameters only."""
    out = []
    for i in range(k):
        out.append({**ARM, "train_steps": steps, "eval_every": steps, "eval_samples": 100, "seed": 0,
                    "learning_rate": 1e-4 * (1 + i), "beta1": 0.5 - 0.05 * i, "beta2": 0.999 - 0.01 * i,
                    "penalty_weight": 1.0 + i})
    return out


def _env(cache: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["GAN_STUDY_CACHE"] = str(cache)
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache / "jax_compilation")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def run_packed(trials: list[dict], out: pathlib.Path, cache: pathlib.Path) -> float:
    """Wall seconds of one fresh process running all trials sequentially."""
    spec = out / "pack.json"
    out.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(trials))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.packing", "--worker", str(spec), str(out)],
                   check=True, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_separate(trials: list[dict], out: pathlib.Path, caches: list[pathlib.Path]) -> float:
    """Wall seconds of one fresh `python -m study.trial` process per trial, one after another."""
    start = time.perf_counter()
    for i, (trial, cache) in enumerate(zip(trials, caches)):
        args = [f"{key}={value}" for key, value in trial.items()] + [f"out={out / str(i)}"]
        subprocess.run([sys.executable, "-m", "study.trial", *args], check=True, env=_env(cache),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows_of(directory: pathlib.Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(directory / "rows.parquet").sort_values("step")
    return frame[[c for c in COMPARED if c in frame.columns] + ["step"]].to_dict("records")


def worker(spec: str, out: str) -> None:
    """The packed process: every config through run_trial, sharing the compiled program."""
    from study.runtime import configure_jax
    from study.trial.config import TrialConfig
    from study.trial.loop import run_trial

    configure_jax()
    for i, values in enumerate(json.loads(pathlib.Path(spec).read_text())):
        run_trial(TrialConfig.from_dict(values), pathlib.Path(out) / str(i), log=lambda message: None)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2])
        return
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ks", default=None, help="comma-separated k values (default 1,2,4,8; --quick: 2)")
    p.add_argument("--steps", type=int, default=None, help="train_steps per trial (default 60; --quick: 4)")
    p.add_argument("--no-warm", action="store_true", help="skip the warm-cache separate runs")
    args = p.parse_args(argv)
    ks = [int(k) for k in (args.ks or ("2" if args.quick else "1,2,4,8")).split(",")]
    steps = args.steps or (4 if args.quick else 60)
    figures: dict = {"steps": steps}
    identical = True
    with tempfile.TemporaryDirectory(prefix="bench_packing_") as tmp:
        root = pathlib.Path(tmp)
        warm_cache = root / "warm_cache"
        if not args.no_warm and not args.quick:
            run_separate(configs(1, steps), root / "prewarm", [warm_cache])
        for k in ks:
            trials = configs(k, steps)
            packed_s = run_packed(trials, root / f"packed{k}", root / f"cache_packed{k}")
            cold_s = run_separate(trials, root / f"cold{k}", [root / f"cache_cold{k}_{i}" for i in range(k)])
            line = f"k={k}: packed {packed_s:.1f} s, separate cold {cold_s:.1f} s"
            figures[f"k{k}_packed_s"] = packed_s
            figures[f"k{k}_separate_cold_s"] = cold_s
            figures[f"k{k}_ratio_cold"] = cold_s / packed_s  # throughput ratio = time ratio (same k)
            line += f" (ratio {cold_s / packed_s:.2f})"
            if not args.no_warm and not args.quick:
                packed_warm_s = run_packed(trials, root / f"packed_warm{k}", warm_cache)
                warm_s = run_separate(trials, root / f"warm{k}", [warm_cache] * k)
                figures[f"k{k}_packed_warm_s"] = packed_warm_s
                figures[f"k{k}_separate_warm_s"] = warm_s
                figures[f"k{k}_ratio_warm"] = warm_s / packed_warm_s
                line += f"; warm cache: packed {packed_warm_s:.1f} s, separate {warm_s:.1f} s (ratio {warm_s / packed_warm_s:.2f})"
            for i in range(k):
                if rows_of(root / f"packed{k}" / str(i)) != rows_of(root / f"cold{k}" / str(i)):
                    identical = False
            print(line, flush=True)
    largest = max(ks)
    ratio = figures.get(f"k{largest}_ratio_warm", figures[f"k{largest}_ratio_cold"])
    print(result_line("packing", ratio, k=largest, identical=int(identical), **figures))


if __name__ == "__main__":
    main()
