"""Helpers shared by the benchmarks: timing, thread settings, the result line."""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable


def pin_threads(threads: int = 2) -> None:
    """Same thread count for both sides. XLA:CPU uses one thread per core (2 on the
    benchmark machine); torch is told the same number."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` (which must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_medians(ours: Callable[[], object], reference: Callable[[], object],
                        repeats: int) -> tuple[float, float]:
    """Median wall seconds of `ours()` and `reference()` (each must block until done),
    one warm-up each, then timed alternately (ours, reference, ours, ...) so that a
    change of machine load lands on both sides alike."""
    ours()
    reference()
    times_ours, times_reference = [], []
    for _ in range(repeats):
        for fn, times in ((ours, times_ours), (reference, times_reference)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_ours), statistics.median(times_reference)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="toy size: seconds, for the tests")
    return p


def result_line(name: str, ratio: float, **figures: float | int | str) -> str:
    """The benchmark's last line: `NAME ratio=X.XX key=value ...`."""
    parts = [f"{name} ratio={ratio:.2f}"]
    for key, value in figures.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)
