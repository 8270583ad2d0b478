"""A study on a two-node Ray cluster whose worker node shares no disk with the driver.

The cluster lives on loopback: a head node with 0 CPUs (the usual layout, so every
trial runs on a worker) and a worker node started inside its own mount namespace
(`unshare -m`) with an empty tmpfs mounted over the driver's private folder, so that
folder is invisible to the worker exactly as a driver's disk is to a cloud VM. The
study's storage is an S3 API server on loopback (moto) or a plain path both nodes see
(standing for NFS). Everything is torn down by process ids; never `ray stop`, which
would end every Ray process on the machine.

Loopback, the way that works (Ray 2.60): Ray replaces a node or head address written
127.0.0.1 / localhost with the machine's outward address (`resolve_ip_for_localhost`);
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 stops that, but then `ray start --address` refuses
to add a worker node ("Multi-node Ray clusters are not supported"), and a worker told
--address=127.0.0.1:PORT dials the rewritten outward address and never joins. Other
loopback addresses are not rewritten, and Linux routes all of 127.0.0.0/8 to `lo`: the
head runs at --node-ip-address=127.0.0.2, each worker node at 127.0.0.3, 127.0.0.4, ...
and the driver connects to 127.0.0.2:PORT. (Ray's gRPC servers still bind every
interface; addresses only decide what the nodes advertise and dial.) Tokens: every
process runs with RAY_AUTH_MODE=token and the same RAY_AUTH_TOKEN.

Needs root (unshare, mount), the `ray` command and moto's server; skipped otherwise.
"""
from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
from processes import kill_tree, moto_server_command, s3_server

RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
MOTO = moto_server_command()
UNSHARE = shutil.which("unshare")

pytestmark = [
    pytest.mark.skipif(RAY is None or UNSHARE is None or os.geteuid() != 0,
                       reason="needs root, unshare and the ray command"),
]

SMOKE = ["--space", "smoke", "--set", "batch_size=16", "--set", "train_steps=20", "--set", "eval_every=10",
         "--set", "eval_samples=100", "--no-report", "--pack", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every interface: Ray's GCS binds them all
        return s.getsockname()[1]


class LoopbackCluster:
    """A head node (0 CPUs) and worker nodes on loopback; workers cannot see `hidden`."""

    def __init__(self, root: pathlib.Path, env: dict[str, str]):
        self.root = root
        self.hidden = root / "private"  # the driver's own disk: not mounted on workers
        self.hidden.mkdir()
        self.port = _free_port()
        self.address = f"127.0.0.2:{self.port}"
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    # Fast detection of a lost node (Ray's default takes ~30 s).
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_initial_delay_ms": "1000", "RAY_DEDUP_LOGS": "0"}
        self.head = None
        self.workers: list[subprocess.Popen] = []

    def driver_env(self) -> dict[str, str]:
        return {**self.env, "RAY_ADDRESS": ""}

    def start_head(self) -> None:
        self.head = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.2", f"--port={self.port}",
             "--num-cpus=0", "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={self.root / 'ray'}"],
            env=self.driver_env(), stdout=open(self.root / "head.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait_nodes(1)

    def add_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        script = (f"mount -t tmpfs tmpfs {self.hidden} && exec {RAY} start --block --address={self.address} "
                  f"--node-ip-address=127.0.0.{3 + index} --num-cpus=1 --disable-usage-stats")
        worker = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", script],
            env={**self.env}, stdout=open(self.root / f"worker{index}.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.workers.append(worker)
        self._wait_nodes(sum(w.poll() is None for w in self.workers) + 1)
        return worker

    def _wait_nodes(self, count: int, timeout: float = 120) -> None:
        probe = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                 env=self.driver_env(), timeout=120)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(2)
        logs = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log")))
        raise AssertionError(f"the cluster did not reach {count} node(s): {logs}")

    def kill_worker(self, worker: subprocess.Popen) -> None:
        kill_tree(worker)

    def close(self) -> None:
        for worker in self.workers:
            kill_tree(worker)
        if self.head is not None:
            kill_tree(self.head)


@pytest.fixture(scope="module")
def s3_env():
    """An S3 API server (moto) on loopback, a bucket, and the environment every node needs."""
    if MOTO is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with s3_server("studies") as env:
        yield env


@pytest.fixture
def cluster(s3_env):
    root = pathlib.Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths
    cluster = LoopbackCluster(root, {**os.environ, **s3_env})
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


def _study(cluster: LoopbackCluster, out: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.run", *SMOKE, *extra, "--address", cluster.address,
                           "--out", out], capture_output=True, text=True, timeout=timeout,
                          env=cluster.driver_env(), cwd=pathlib.Path(__file__).resolve().parent.parent)


def _results(location: str) -> pd.DataFrame:
    from study.storage.location import at

    return (at(location) / "results.parquet").read_parquet()


def _assert_every_evaluation_once(results: pd.DataFrame, steps: list[int]) -> None:
    assert results["trial_id"].nunique() == 2, results[["trial_id", "step", "status"]]
    assert not results.duplicated(["trial_id", "step"]).any()
    for _, rows in results.groupby("trial_id"):
        assert list(rows["step"]) == steps
        assert rows["status"].eq("completed").all() and rows["final"].sum() == 1


def test_study_on_s3_and_on_a_shared_path_with_a_zero_cpu_head(cluster, s3_env):
    cluster.add_worker()
    # The driver's own folder is refused: the worker cannot read it back.
    refused = _study(cluster, str(cluster.hidden / "study"))
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "cannot read it" in refused.stderr.strip().splitlines()[-1]

    s3 = _study(cluster, "s3://studies/smoke")
    assert s3.returncode == 0, s3.stderr[-3000:]
    _assert_every_evaluation_once(_results("s3://studies/smoke"), [10, 20])

    shared = cluster.root / "shared" / "smoke"  # a path both nodes see (as an NFS mount)
    local = _study(cluster, str(shared))
    assert local.returncode == 0, local.stderr[-3000:]
    _assert_every_evaluation_once(pd.read_parquet(shared / "results.parquet"), [10, 20])


def test_a_lost_worker_node_resumes_the_trial_at_its_checkpoint_on_a_fresh_node(cluster, s3_env):
    from study.storage.location import at

    worker = cluster.add_worker()
    out = "s3://studies/lost-node"
    # A longer smoke study (each --set key may be given once).
    smoke = ["train_steps=40" if arg == "train_steps=20" else arg for arg in SMOKE]
    args = [sys.executable, "-m", "study.run", *smoke, "--address", cluster.address, "--out", out]
    log = open(cluster.root / "driver.log", "w+")
    driver = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=cluster.driver_env(),
                              cwd=pathlib.Path(__file__).resolve().parent.parent, start_new_session=True)
    try:
        trials = at(out) / "trials"
        deadline, saved = time.time() + 400, []
        while time.time() < deadline and not saved and driver.poll() is None:
            for trial_id in trials.children():
                saved = [int(s.split(".")[0]) for s in (trials / trial_id / "checkpoints").children()
                         if s.endswith(".committed")]
            time.sleep(0.5)
        assert saved, "no checkpoint reached the storage: " + (cluster.root / "driver.log").read_text()[-3000:]
        cluster.kill_worker(worker)
        cluster.add_worker()
        assert driver.wait(timeout=500) == 0, (cluster.root / "driver.log").read_text()[-3000:]
    finally:
        kill_tree(driver)
    text = (cluster.root / "driver.log").read_text()
    results = _results(out)
    _assert_every_evaluation_once(results, [10, 20, 30, 40])
    resumed = [int(line.split("resuming from step ")[1].split()[0]) for line in text.splitlines()
               if "resuming from step " in line]
    assert resumed and resumed[0] >= min(saved), text[-3000:]
