"""A restricted unpickler for the CIFAR-10 python batches: plain data and numpy arrays only.

`pickle.load` runs whatever callable a file names (`__reduce__`), so a doctored
download could execute code. This unpickler resolves only the globals that numpy
array reconstruction needs; every other global is refused before it is imported or
called. Builtin containers (dict, list, tuple, str, bytes, int, float, bool, None)
are built by pickle opcodes and need no global at all.
"""
from __future__ import annotations

import io
import pickle

import numpy as np
from numpy._core.multiarray import _reconstruct
from numpy._core.numeric import _frombuffer

from study.data.errors import DataError

# (module, name) as written in the file -> the object. The official batches were
# written by Python 2 / numpy 1 and name `numpy.core.multiarray`; numpy >= 2 writes
# `numpy._core.multiarray`. Both mean the same function. Python 3 rewrites of the files
# add two more: protocol 5 arrays go through `_frombuffer`, and protocol 2 stores bytes
# as `_codecs.encode(text, "latin1")` (admitted only with that codec, on a str).


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise DataError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}) in pickle; only latin1 bytes are expected")
    return text.encode("latin1")


ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        # latin1 decodes Python 2 `str` losslessly; numpy reads array bytes from it.
        super().__init__(file, encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.where}: refused to unpickle global {module}.{name}; a CIFAR-10 batch holds only "
                f"dicts, lists, bytes/str, ints and numpy arrays (the file is not the official one, or was tampered with)"
            ) from None

    def persistent_load(self, pid):
        raise DataError(f"{self.where}: refused persistent id {pid!r} in pickle")


def safe_loads(payload: bytes, where: str):
    """Unpickle `payload` admitting only plain data and numpy arrays; `where` names it in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(payload), where).load()
    except DataError:
        raise
    except Exception as error:  # truncated or malformed pickles raise many types
        raise DataError(f"{where}: not a readable pickle ({type(error).__name__}: {error})") from None
