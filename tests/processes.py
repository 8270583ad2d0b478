"""Ending the processes a test started, by their own ids (never `ray stop`, which ends
every Ray process on the machine, other users' and other tests' included)."""
from __future__ import annotations

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
