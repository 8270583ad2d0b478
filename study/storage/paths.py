"""Checks of output folders named on a command line, made before any work starts.

Every CLI that writes a folder (`study.run --out`, `study.trial out=`, `study.data
--to`, `analysis.report --out`) refuses a path it could not write with one line that
names the path and why, instead of failing later with a traceback (possibly after
minutes of training or Ray start-up).
"""
from __future__ import annotations

import errno
import os
import pathlib


def check_output_dir(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """`path` as a Path when it is, or can be created as, a writable folder.

    Raises ValueError (one line, naming `flag`, the path and what is wrong) when the path
    is empty, is a file, lies under a file, or its nearest existing folder is not writable.
    Creates nothing.
    """
    text = os.fspath(path)
    if not text.strip():
        raise ValueError(f"{flag} is empty; give a folder path")
    shown = f"{flag}{text}" if flag.endswith("=") else f"{flag} {text}"
    target = pathlib.Path(text).expanduser()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{shown}: is a file, not a folder; give a folder path")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{shown}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{shown}: the folder {existing} is not writable")
    return target


def disk_full_message(error: OSError, folder: str | os.PathLike) -> str | None:
    """One line for a full disk or quota (ENOSPC, EDQUOT) while writing under `folder`;
    None for any other OSError."""
    if error.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return None
    where = error.filename or folder
    return f"no space left on the device writing {where} (folder {folder})"
