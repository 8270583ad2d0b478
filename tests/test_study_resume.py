"""A study killed with SIGKILL (driver and Ray together) resumes without losing or
duplicating trials; a study connects to an existing Ray head started with `ray start`."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
from processes import kill_tree

from study.trial.config import TrialConfig

# The `ray` command of the interpreter running the tests (the venv's bin/ need not be on PATH).
RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")

def _study(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "study.run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


def test_kill9_then_resume_runs_each_config_exactly_once(tmp_path):
    study_dir = tmp_path / "killed"
    args = ["--space", "smoke", "--set", "batch_size=16", "--set", "train_steps=30", "--no-report"]
    driver = _study(*args, "--out", str(study_dir))
    # Kill as soon as the first evaluation row is on disk: mid-study, mid-trial.
    deadline = time.time() + 240
    while time.time() < deadline and not list(study_dir.glob("trials/*/rows.parquet")):
        time.sleep(0.5)
    assert list(study_dir.glob("trials/*/rows.parquet")), "no trial reached its first evaluation"
    # The driver and the local Ray it started (GCS, raylet, trial workers) die together, as
    # in a machine crash; by their ids, so no other Ray on the machine is touched.
    kill_tree(driver)

    resumed = subprocess.run([sys.executable, "-m", "study.run", "--resume", str(study_dir)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = pd.read_parquet(study_dir / "results.parquet")
    expected = {
        TrialConfig.from_dict({**t, "batch_size": 16, "train_steps": 30}).trial_id
        for t in _smoke_trials()
    }
    assert set(results["trial_id"]) == expected
    assert not results.duplicated(["trial_id", "step"]).any()
    for _, rows in results.groupby("trial_id"):
        assert list(rows["step"]) == [10, 20, 30]
        assert rows["status"].eq("completed").all() and rows["final"].sum() == 1


def _smoke_trials():
    import search_spaces

    return search_spaces.expand(search_spaces.get("smoke"), {"dataset": "digits", "scale": "tiny",
                                                             "architecture": "sndcgan"})


@pytest.mark.skipif(RAY is None, reason="the `ray` command is not installed")
def test_study_connects_to_a_running_ray_head(tmp_path):
    port = "6391"
    # Ray rewrites 127.0.0.1 to the machine's outward address unless told this is a
    # single-machine cluster; the test must stay on loopback.
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster
    # --block keeps the head's processes below this Popen, so the test ends them by their ids.
    # A short --temp-dir: Ray's Unix sockets live under it (at most 107 bytes of path).
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={temp_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and head.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(port))) == 0:
                    break
            time.sleep(1)
        done = subprocess.run(
            [sys.executable, "-m", "study.run", "--space", "smoke", "--address", f"127.0.0.1:{port}",
             "--set", "batch_size=16", "--set", "train_steps=10", "--out", str(tmp_path / "cluster"), "--no-report"],
            capture_output=True, text=True, timeout=600, env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = pd.read_parquet(tmp_path / "cluster" / "results.parquet")
        assert results["trial_id"].nunique() == 2 and results["status"].eq("completed").all()
    finally:
        kill_tree(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
