"""Checkpoints of the full train state with orbax: verified, kept to a budget, on any storage.

Orbax writes each checkpoint into a temporary directory and renames it when complete,
so a kill mid-write leaves no half checkpoint in the listing. Orbax writes to a local
folder; when the trial's storage is remote (s3://, gs://, see study.storage.location) that
folder is a scratch copy on the worker and every saved step is uploaded to
`TRIAL/checkpoints/<step>` in the storage, so a retried trial on another node finds it.

Every checkpoint verifies itself: its metadata holds the sha256 of the saved state
(`state_digest`), recomputed on restore. A checkpoint that cannot be read or does not
match is deleted with a warning (so the next save of that step does not meet orbax's
StepAlreadyExistsError) and the previous one is tried.

Storage budget (`keep`): while a trial runs, its latest and its best-scoring checkpoint
are kept; once it completes, `final` keeps only the last one, `none` none, `all` every one.
"""
from __future__ import annotations

import hashlib
import pathlib
import shutil
import sys
import tempfile
from typing import Any, Iterable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from study.storage.location import Location, at

KEEP_POLICIES = ("final", "none", "all")
COMMITTED = ".committed"  # `<step>.committed` beside an uploaded step: its upload is complete
DIGEST = "state_digest"


def parse_keep(value: str) -> str:
    """`--keep-checkpoints` value; anything else is a one-line ValueError."""
    if value not in KEEP_POLICIES:
        raise ValueError(f"--keep-checkpoints={value!r} is not allowed; choose one of {', '.join(KEEP_POLICIES)}")
    return value


def state_digest(state: Any) -> str:
    """sha256 over every leaf of a pytree: its path, dtype, shape and bytes (host copy)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    for path, leaf in leaves:
        array = np.asarray(jax.device_get(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def steps_to_keep(steps: Iterable[int], scores: Mapping[int, float], *, finished: bool, keep: str) -> set[int]:
    """Which checkpoint steps survive: running -> the latest and the best-scoring one
    (lowest finite score; NaN never best); finished -> per `keep` (final: the latest)."""
    steps = sorted(set(int(s) for s in steps))
    if not steps or keep == "all":
        return set(steps)
    if finished:
        return {steps[-1]} if keep == "final" else set()
    kept = {steps[-1]}
    scored = [(scores[s], s) for s in steps if s in scores and scores[s] == scores[s]]
    if scored:
        kept.add(min(scored)[1])
    return kept


class Checkpoints:
    """A trial's checkpoints in `directory` (a local path or any study storage)."""

    def __init__(self, directory: "pathlib.Path | str | Location", keep: str = "final", scratch: pathlib.Path | None = None):
        self.location = at(directory)
        self.keep = parse_keep(keep)
        self.remote = not self.location.is_local
        if self.remote:
            self._scratch = tempfile.TemporaryDirectory(prefix="gan-study-ckpt-", dir=scratch)
            local = pathlib.Path(self._scratch.name)
        else:
            self._scratch = None
            local = self.location.local_path
        self.directory = local.absolute()
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False, create=True),
        )

    def steps(self) -> list[int]:
        """Checkpoint steps in the storage (what a retried trial anywhere would see)."""
        if self.remote:
            names = set(self.location.children())
            return sorted(int(name) for name in names if name.isdigit() and f"{name}{COMMITTED}" in names)
        return sorted(int(s) for s in self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        meta = {**meta, DIGEST: state_digest(state)}
        self.manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self.manager.wait_until_finished()
        if self.remote:
            (self.location / str(int(step))).upload(self.directory / str(int(step)))
            (self.location / f"{int(step)}{COMMITTED}").write_text(meta[DIGEST])

    def restore_latest(self, like: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest checkpoint that reads and verifies, or None if none does."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        for step in sorted(self.steps(), reverse=True):
            try:
                if self.remote and not (self.directory / str(step)).exists():
                    (self.location / str(step)).download(self.directory / str(step))
                    self.manager.reload()
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
                )
                meta = dict(restored["meta"])
                expected = meta.pop(DIGEST, None)
                if expected is None:
                    raise ValueError("its metadata holds no state digest")
                actual = state_digest(restored["state"])
                if actual != expected:
                    raise ValueError(f"state digest {actual[:12]} does not match the recorded {expected[:12]}")
                return restored["state"], meta
            except Exception as error:  # a damaged checkpoint: removed, fall back to the one before
                print(f"warning: checkpoint step {step} in {self.location} is damaged "
                      f"({type(error).__name__}: {str(error)[:200]}); deleting it and trying the previous one",
                      file=sys.stderr, flush=True)
                self.delete(step)
        return None

    def delete(self, step: int) -> None:
        shutil.rmtree(self.directory / str(int(step)), ignore_errors=True)
        if self.remote:
            (self.location / f"{int(step)}{COMMITTED}").delete()  # first: a half-deleted step is not listed
            (self.location / str(int(step))).delete()
        self.manager.reload()

    def prune(self, scores: Mapping[int, float], *, finished: bool) -> None:
        """Deletes the steps `steps_to_keep` does not keep, here and in the storage."""
        steps = self.steps()
        for step in sorted(set(steps) - steps_to_keep(steps, scores, finished=finished, keep=self.keep)):
            self.delete(step)

    def discard_all(self) -> None:
        for step in self.steps():
            self.delete(step)

    def close(self) -> None:
        self.manager.close()
        if self._scratch is not None:
            self._scratch.cleanup()
