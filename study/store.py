"""The results store: one row per (trial, evaluation), Parquet, written atomically.

Each trial rewrites its own `rows.parquet` (all its rows so far) with a
write-to-temporary-then-rename, so a kill never leaves a torn file; the study driver
merges them into `STUDY_DIR/results.parquet` the same way. Rows are keyed by
(trial_id, step): a resumed trial that re-evaluates a step replaces the row instead of
duplicating it. Readable by pandas alone (analysis/ never imports JAX or Ray).
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Iterable, Mapping

import pandas as pd

from study.config import TrialConfig

ROWS_FILE = "rows.parquet"
RESULTS_FILE = "results.parquet"
TRIALS_DIR = "trials"

METRIC_COLUMNS = (
    "fid", "fid_domain", "kid", "kid_domain", "is", "is_domain", "precision", "recall",
    "precision_domain", "recall_domain", "ms_ssim", "d_loss", "g_loss",
)
STATUSES = ("running", "completed", "diverged", "failed")


def write_parquet_atomic(frame: pd.DataFrame, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(data: Mapping[str, Any], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def _normalize(frame: pd.DataFrame) -> pd.DataFrame:
    for column in METRIC_COLUMNS:
        if column not in frame:
            frame[column] = float("nan")
        frame[column] = frame[column].astype("float64")
    for column, default in (("diverged", False), ("final", False)):
        frame[column] = frame[column].fillna(default).astype(bool) if column in frame else default
    frame["error"] = frame["error"].fillna("").astype(str) if "error" in frame else ""
    if "status" not in frame:
        frame["status"] = pd.Series(dtype=str)
    return frame


class TrialRows:
    """The rows of one trial, kept in memory and mirrored to `trial_dir/rows.parquet`."""

    def __init__(self, trial_dir: pathlib.Path, identity: Mapping[str, Any], config: TrialConfig):
        self.path = pathlib.Path(trial_dir) / ROWS_FILE
        self.fixed = {**identity, "trial_id": config.trial_id, **config.to_dict()}
        self.rows: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            for row in pd.read_parquet(self.path).to_dict("records"):
                self.rows[int(row["step"])] = row

    def _check_disjoint(self, values: Mapping[str, Any]) -> None:
        """A metric must never overwrite a config or identity column (a D-loss term named
        `penalty` once replaced the config's penalty name and broke the row's schema)."""
        clash = sorted(set(values) & set(self.fixed))
        if clash:
            raise ValueError(f"row values {clash} collide with config/identity columns; rename the metric")

    def add(self, step: int, values: Mapping[str, Any]) -> None:
        """Adds or replaces the row of `step`, then rewrites the file atomically."""
        self._check_disjoint(values)
        for row in self.rows.values():
            row["final"] = False
        self.rows[int(step)] = {**self.fixed, "step": int(step), **values}
        self.flush()

    def mark_final(self, status: str, error: str = "", diverged: bool = False, step: int | None = None,
                   extra: Mapping[str, Any] | None = None) -> None:
        """Marks the trial's outcome on its last row (adding one if it has none, e.g. a
        trial that failed before its first evaluation)."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r} is not allowed; choose one of {STATUSES}")
        self._check_disjoint(extra or {})
        if not self.rows or (step is not None and step > max(self.rows)):
            self.rows[int(step or 0)] = {**self.fixed, "step": int(step or 0), **(extra or {})}
        last = max(self.rows)
        for row in self.rows.values():
            row["final"] = False
            row["status"] = status
            row["diverged"] = diverged
        self.rows[last].update({"final": True, "error": error})
        self.flush()

    def flush(self) -> None:
        frame = _normalize(pd.DataFrame([self.rows[k] for k in sorted(self.rows)]))
        write_parquet_atomic(frame, self.path)

    @property
    def best(self) -> float:
        values = [r.get("score") for r in self.rows.values() if r.get("score") is not None]
        values = [v for v in values if v == v]
        return min(values) if values else float("nan")


def read_final(trial_dir: pathlib.Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(all rows, the final row) of the trial in `trial_dir`, or None when it has no
    readable rows file or no row marked final yet (it has not ended)."""
    path = pathlib.Path(trial_dir) / ROWS_FILE
    if not path.exists():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception:  # a torn or foreign file: the trial runs again and rewrites it
        return None
    if "final" not in frame or not len(frame):
        return None
    final = frame[frame["final"].fillna(False).astype(bool)]
    if not len(final):
        return None
    return frame, final.iloc[-1].to_dict()


def finished_row(trial_dir: pathlib.Path) -> dict[str, Any] | None:
    """The final row of a trial that already completed or diverged in `trial_dir`, else None."""
    ended = read_final(trial_dir)
    if ended is None or ended[1]["status"] not in ("completed", "diverged"):
        return None
    return ended[1]


def read_trial_rows(study_dir: pathlib.Path) -> Iterable[pd.DataFrame]:
    for path in sorted((pathlib.Path(study_dir) / TRIALS_DIR).glob(f"*/{ROWS_FILE}")):
        try:
            yield pd.read_parquet(path)
        except Exception as error:  # a foreign or damaged file must not sink the study
            print(f"warning: skipping unreadable {path}: {error}")


def collect(study_dir: pathlib.Path) -> pd.DataFrame:
    """Merges every trial's rows into `STUDY_DIR/results.parquet` (atomically) and returns them."""
    frames = [f for f in read_trial_rows(study_dir) if len(f)]
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.drop_duplicates(subset=["trial_id", "step"], keep="last")
        frame = frame.sort_values(["trial_id", "step"]).reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=["study", "trial_id", "step", *TrialConfig.field_names()])
    frame = _normalize(frame)
    write_parquet_atomic(frame, pathlib.Path(study_dir) / RESULTS_FILE)
    return frame
