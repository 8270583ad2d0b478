"""Ending the processes a test started, by their own ids (never `ray stop`, which ends
every Ray process on the machine, other users' and other tests' included)."""
from __future__ import annotations

import contextlib
import subprocess


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process we started and every process below it, by their ids."""
    import psutil

    try:
        parent = psutil.Process(process.pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=20)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass


MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


def moto_server_command() -> str | None:
    """moto's S3 API server of the interpreter running the tests (or on PATH), if installed."""
    import os
    import shutil
    import sys

    return shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")


@contextlib.contextmanager
def s3_server(bucket: str):
    """An S3 API server (moto) on 127.0.0.1 with `bucket`, its environment (endpoint and
    dummy keys) set in os.environ while the block runs; yields that environment. The
    server is ended by its process id and os.environ restored afterwards."""
    import os
    import socket
    import time

    import pyarrow.fs as pafs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **MOTO_ENV}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http",
                          allow_bucket_creation=True).create_dir(bucket)
        yield env
    finally:
        kill_tree(server)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
