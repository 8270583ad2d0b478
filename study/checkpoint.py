"""Checkpoints of the full train state with orbax, and a fallback past damaged ones.

Orbax writes each checkpoint into a temporary directory and renames it when complete,
so a kill mid-write leaves no half checkpoint in the listing. A checkpoint that is
listed but cannot be read (a damaged disk, a truncated copy) is skipped with a warning
and the previous one is used.
"""
from __future__ import annotations

import pathlib
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: pathlib.Path, max_to_keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                                 create=True),
        )

    def save(self, step: int, state: Any, meta: dict) -> None:
        self.manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore_latest(self, like: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest readable checkpoint, or None if there is none."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
                )
                return restored["state"], dict(restored["meta"])
            except Exception as error:  # a damaged checkpoint: fall back to the one before
                print(f"warning: checkpoint step {step} in {self.directory} is unreadable "
                      f"({type(error).__name__}: {str(error)[:200]}); trying the previous one", file=sys.stderr)
        return None

    def close(self) -> None:
        self.manager.close()
