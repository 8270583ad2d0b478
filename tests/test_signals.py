"""SIGINT and SIGTERM stop a study cleanly (exit 130 / 143, the manifest
marked interrupted and not finished, the last line names `--resume STUDY_DIR`), and
`--resume` then completes the study with every configuration once."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pandas as pd

from study.sweep import interrupt


def _start(log: pathlib.Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.run", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(log: pathlib.Path, driver: subprocess.Popen, text: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.25)
    raise AssertionError(f"{text!r} never appeared (rc {driver.poll()}):\n{log.read_text()[-3000:]}")


def _check_stopped(driver, log, study_dir, signum) -> None:
    assert driver.wait(timeout=240) == 128 + signum, log.read_text()[-3000:]
    output = log.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1] == (f"interrupted by {signal.Signals(signum).name}; continue with: "
                         f"python -m study.run --resume {study_dir}"), output[-3000:]
    assert "Tuner.restore" not in output and "Traceback" not in output, output[-3000:]
    manifest = json.loads((study_dir / "manifest.json").read_text())
    assert "finished" not in manifest or manifest["finished"] is None
    assert manifest["interrupted_by"] == signal.Signals(signum).name


def test_sigint_then_sigterm_stop_cleanly_and_resume_completes(tmp_path):
    """One study, stopped twice: SIGINT while Ray Tune runs its trials, SIGTERM during the
    resumed run; a third run completes it. (One test, not two: each start of Ray and
    compile of the smoke programs costs tens of seconds on a 2-core CI machine.)"""
    study_dir = tmp_path / "stopped"
    args = ["--space", "smoke", "--set", "batch_size=16", "--set", "train_steps=20", "--retries", "0",
            "--no-report"]
    log = tmp_path / "first.log"
    driver = _start(log, *args, "--out", str(study_dir))
    _wait_for(log, driver, "Ray trial(s) of")  # inside run_grid: Ray is up, Tuner.fit starts
    time.sleep(5)
    driver.send_signal(signal.SIGINT)
    _check_stopped(driver, log, study_dir, signal.SIGINT)

    log = tmp_path / "second.log"
    driver = _start(log, "--resume", str(study_dir))
    _wait_for(log, driver, "resuming from the study's rows and checkpoints")
    time.sleep(5)
    driver.send_signal(signal.SIGTERM)
    _check_stopped(driver, log, study_dir, signal.SIGTERM)

    done = subprocess.run([sys.executable, "-m", "study.run", "--resume", str(study_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((study_dir / "manifest.json").read_text())
    assert manifest["finished"] and manifest["interrupted"] is None
    results = pd.read_parquet(study_dir / "results.parquet")
    assert results["trial_id"].nunique() == 2
    assert not results.duplicated(["trial_id", "step"]).any()
    # Every configuration ended exactly once, none is left "running".
    assert results.groupby("trial_id")["final"].sum().eq(1).all()
    assert not results["status"].eq("running").any()


def test_signal_outside_tuner_fit_raises_interrupted_with_the_shell_exit_code():
    """Before Ray Tune runs (Ray starting) a stop signal ends the study at once; after the
    guard the previous handlers are back."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        with interrupt.study_guard():
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
        raise AssertionError("no Interrupted raised")
    except interrupt.Interrupted as stop:
        assert stop.signum == signal.SIGTERM and stop.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_tune_fit_outside_a_guard_changes_nothing():
    with interrupt.tune_fit():
        assert signal.getsignal(signal.SIGINT) is not interrupt._handler
