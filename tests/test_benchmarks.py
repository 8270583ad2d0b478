"""Each benchmark runs at toy size (--quick) and ends with its `NAME ratio=X.XX ...` line.

Speed goals live in the benchmarks' printed ratios, never here: these tests only check
that every benchmark still runs against the current code. The packing benchmark also
reports whether packed trials' rows equal separate trials' rows bit for bit; that must hold.
"""
import re
import subprocess
import sys

import pytest

# train_step runs in the default suite; the others compile Inception or start many
# trial processes (minutes each on a 2-core CPU) and run with `pytest -m slow`.
BENCHMARKS = [
    "train_step",
    pytest.param("fid_features", marks=pytest.mark.slow),
    pytest.param("packing", marks=pytest.mark.slow),
    pytest.param("sweep_overhead", marks=pytest.mark.slow),
]


def run_quick(name: str) -> str:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, done.stderr[-4000:]
    return lines[-1]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_quick_prints_its_line(name):
    last = run_quick(name)
    assert re.match(rf"^{name} ratio=\d", last), last
    if name == "packing":
        # Packed trials (one process, one compiled program) must train exactly as separate ones.
        assert " identical=1" in last, last


@pytest.mark.slow
def test_study_stability_quick_prints_spearman_last():
    # Two toy studies through Ray (minutes on a 2-core CPU): the line names rho, its interval and the arms.
    last = run_quick("study_stability")
    assert re.match(r"^study_stability spearman=-?\d\.\d+ low=-?\d\.\d+ high=-?\d\.\d+ ratio=-?\d.* arms=2 "
                    r"trials=24\+24$", last), last
