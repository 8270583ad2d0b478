"""Self-verifying cache files: a damaged cache is detected, reported once and rebuilt.

Every cache file the evaluator writes (domain classifier, real-image statistics,
reference points) is `MAGIC + sha256(payload) hex + "\\n" + payload`, written to a
temporary file and renamed into place. `read_verified` returns the payload only when the
magic and the digest match; a truncated, garbled or foreign file gives None and a
warning naming the file, and the caller recomputes and overwrites it. So a damaged cache
costs one recomputation, never a failing trial (a truncated cache once made
every later trial fail until it was deleted by hand).
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib
import sys

import numpy as np

MAGIC = b"GANSTUDY-CACHE-1 sha256="
_DIGEST_HEX = 64


def write_verified(path: pathlib.Path, payload: bytes) -> None:
    """Writes MAGIC + digest + payload atomically (temporary file in the same folder, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    os.replace(tmp, path)


def read_verified(path: pathlib.Path, log=None) -> bytes | None:
    """The payload of a cache file written by `write_verified`; None when the file is absent,
    or (with a warning) unreadable, truncated, garbled or not in this format."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        raw = path.read_bytes()
    except OSError as error:
        return _damaged(path, f"unreadable ({error})", log)
    head = len(MAGIC) + _DIGEST_HEX + 1
    if not raw.startswith(MAGIC) or len(raw) < head or raw[head - 1 : head] != b"\n":
        return _damaged(path, "not a verified cache file (truncated or foreign)", log)
    payload = raw[head:]
    if hashlib.sha256(payload).hexdigest().encode() != raw[len(MAGIC) : head - 1]:
        return _damaged(path, "checksum mismatch (truncated or garbled)", log)
    return payload


def _damaged(path: pathlib.Path, why: str, log) -> None:
    message = f"WARNING: cache file {path} is damaged: {why}; rebuilding it"
    (log or (lambda text: print(text, file=sys.stderr, flush=True)))(message)
    return None


def save_arrays(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """A dict of arrays as a verified .npz payload."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_verified(path, buffer.getvalue())


def load_arrays(path: pathlib.Path, names: tuple[str, ...] = (), log=None) -> dict[str, np.ndarray] | None:
    """The arrays of a verified .npz cache, or None (absent or damaged: rebuild). A payload
    that verifies but lacks one of `names` (written by other code) also counts as damaged."""
    payload = read_verified(path, log)
    if payload is None:
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except Exception as error:  # a verified but unparsable payload: another writer's format
        return _damaged(path, f"payload is not an npz archive ({type(error).__name__})", log)
    missing = [n for n in names if n not in arrays]
    if missing:
        return _damaged(path, f"lacks {missing}", log)
    return arrays
