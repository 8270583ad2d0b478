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
import sys
import tempfile
from typing import Any, Iterable, Mapping

import pandas as pd

from study.schema import (  # noqa: F401 (the store's names)
    CONFIG_FIELDS,
    CONFIG_FILE,
    METRIC_COLUMNS,
    REFERENCE_KINDS,
    RESULTS_FILE,
    ROWS_FILE,
    STATUSES,
    TRIALS_DIR,
)
from study.storage.location import Location, at


def write_parquet_atomic(frame: pd.DataFrame, path: "pathlib.Path | Location") -> None:
    if isinstance(path, Location):
        path.write_parquet(frame)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(data: Mapping[str, Any], path: "pathlib.Path | Location") -> None:
    if isinstance(path, Location):
        path.write_json(data)
        return
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
    """The rows of one trial, kept in memory and mirrored to `trial_dir/rows.parquet`
    (a local folder or any study storage, see study.storage.location).

    A rows file that cannot be read (truncated, garbled) is not fatal: the trial starts
    with no rows, `damaged` is True (its caller then discards checkpoints the lost rows
    belonged to and retrains), and a warning names the file.
    """

    def __init__(self, trial_dir: "pathlib.Path | str | Location", identity: Mapping[str, Any],
                 config):  # a study.trial.config.TrialConfig (.trial_id, .to_dict())
        self.location = at(trial_dir) / ROWS_FILE
        self.fixed = {**identity, "trial_id": config.trial_id, **config.to_dict()}
        self.rows: dict[int, dict[str, Any]] = {}
        self.damaged = False
        if self.location.exists():
            try:
                records = self.location.read_parquet().to_dict("records")
            except Exception as error:
                self.damaged = True
                records = []
                print(f"warning: {self.location} is unreadable ({type(error).__name__}); the trial is "
                      f"trained again from its start", file=sys.stderr, flush=True)
            for row in records:
                self.rows[int(row["step"])] = row

    @property
    def path(self) -> pathlib.Path:
        return self.location.local_path

    def _check_disjoint(self, values: Mapping[str, Any]) -> None:
        """A metric must never overwrite a config or identity column (a D-loss term named
        `penalty` once replaced the config's penalty name and broke the row's schema). A value
        that restates its column (the evaluator's protocol `fid_split`) is no collision."""
        clash = sorted(k for k in set(values) & set(self.fixed) if values[k] != self.fixed[k])
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
        self.location.write_parquet(frame)

    @property
    def best(self) -> float:
        values = [r.get("score") for r in self.rows.values() if r.get("score") is not None]
        values = [v for v in values if v == v]
        return min(values) if values else float("nan")


def read_final(trial_dir: "pathlib.Path | str | Location") -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(all rows, the final row) of the trial in `trial_dir`, or None when it has no
    readable rows file or no row marked final yet (it has not ended)."""
    location = at(trial_dir) / ROWS_FILE
    try:
        frame = location.read_parquet()
    except Exception:  # absent, torn or foreign: the trial runs again and rewrites it
        return None
    if "final" not in frame or not len(frame):
        return None
    final = frame[frame["final"].fillna(False).astype(bool)]
    if not len(final):
        return None
    return frame, final.iloc[-1].to_dict()


def finished_row(trial_dir: "pathlib.Path | str | Location") -> dict[str, Any] | None:
    """The final row of a trial that already completed or diverged in `trial_dir`, else None."""
    ended = read_final(trial_dir)
    if ended is None or ended[1]["status"] not in ("completed", "diverged"):
        return None
    return ended[1]


def trial_ids(study_dir: "pathlib.Path | str | Location") -> list[str]:
    """Trial folders present in the study's storage."""
    return (at(study_dir) / TRIALS_DIR).children()


def read_trial_rows(study_dir: "pathlib.Path | str | Location") -> Iterable[pd.DataFrame]:
    trials = at(study_dir) / TRIALS_DIR
    for trial_id in trials.children():
        location = trials / trial_id / ROWS_FILE
        if not location.exists():
            continue
        try:
            yield location.read_parquet()
        except Exception as error:  # a foreign or damaged file must not sink the study
            print(f"warning: skipping unreadable {location}: {type(error).__name__}: {str(error)[:200]}",
                  file=sys.stderr)


def read_results(study_dir: "pathlib.Path | str | Location") -> pd.DataFrame | None:
    """`STUDY_DIR/results.parquet`, or None when absent or unreadable."""
    try:
        return (at(study_dir) / RESULTS_FILE).read_parquet()
    except Exception:
        return None


def collect(study_dir: "pathlib.Path | str | Location") -> pd.DataFrame:
    """Merges every trial's rows into `STUDY_DIR/results.parquet` (atomically) and returns them.

    A trial whose rows file is missing or unreadable keeps the rows the previous
    results.parquet had for it: a damaged trial folder never shrinks the study's results.
    """
    study = at(study_dir)
    frames = [f for f in read_trial_rows(study) if len(f)]
    previous = read_results(study)
    if previous is not None and len(previous) and "trial_id" in previous:
        fresh = set().union(*(set(f["trial_id"].astype(str)) for f in frames)) if frames else set()
        kept = previous[~previous["trial_id"].astype(str).isin(fresh)]
        if len(kept):
            frames.insert(0, kept)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.drop_duplicates(subset=["trial_id", "step"], keep="last")
        frame = frame.sort_values(["trial_id", "step"]).reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=["study", "trial_id", "step", *CONFIG_FIELDS])
    frame = _normalize(frame)
    (study / RESULTS_FILE).write_parquet(frame)
    return frame


def reference_points(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{dataset: {"<metric>_ref_<kind>": value}} from the results' reference columns (the
    first value per dataset: one protocol per dataset in a study), for the manifest."""
    columns = [c for c in frame.columns if any(c.endswith(f"_ref_{kind}") for kind in REFERENCE_KINDS)]
    out: dict[str, dict[str, float]] = {}
    if not columns or "dataset" not in frame:
        return out
    for dataset, group in frame.groupby("dataset", sort=True):
        values = {c: float(group[c].dropna().iloc[0]) for c in sorted(columns) if group[c].notna().any()}
        if values:
            out[str(dataset)] = values
    return out


def repair_from_results(study_dir: "pathlib.Path | str | Location") -> list[str]:
    """Rewrites the rows file of every trial whose rows are unreadable from the study's
    results.parquet, when it holds that trial's final row (the trial then counts as
    finished instead of being retrained). Returns the repaired trial ids."""
    study = at(study_dir)
    results = read_results(study)
    if results is None or not len(results) or "final" not in results:
        return []
    repaired = []
    for trial_id, rows in results.groupby(results["trial_id"].astype(str)):
        location = study / TRIALS_DIR / trial_id / ROWS_FILE
        if not rows["final"].fillna(False).astype(bool).any() or not location.exists():
            continue
        try:
            location.read_parquet()
            continue
        except Exception:
            pass
        location.write_parquet(_normalize(rows.reset_index(drop=True)))
        print(f"warning: {location} was unreadable; rebuilt from {study / RESULTS_FILE} ({len(rows)} rows)",
              file=sys.stderr, flush=True)
        repaired.append(trial_id)
    return repaired


def mark_missing(study_dir: "pathlib.Path | str | Location", planned: Iterable[Any],
                 identity: Mapping[str, Any], arm_of=None) -> list[str]:
    """Gives every planned trial (a TrialConfig) that has no final row a `failed` final row
    with the reason, so a lost trial is a counted failure, never a silent gap. `arm_of`:
    config dict -> arm label. Returns their ids."""
    study = at(study_dir)
    missing = []
    for config in planned:
        trial_dir = study / TRIALS_DIR / config.trial_id
        if read_final(trial_dir) is not None:
            continue
        ident = {**identity, **({"arm": arm_of(config.to_dict())} if arm_of else {})}
        try:
            rows = TrialRows(trial_dir, ident, config)
        except Exception:  # unreadable storage: nothing more to record than the failure
            continue
        last = max(rows.rows) if rows.rows else None
        reason = ("no rows reached the study storage (the trial never ran, or its node was lost before "
                  "its first evaluation)" if last is None else
                  f"the trial stopped after step {last} without a final row (its node was lost or Ray gave up)")
        rows.mark_final("failed", error=reason)
        missing.append(config.trial_id)
    return missing


def disk_use(study_dir: "pathlib.Path | str | Location") -> dict[str, int]:
    """{trial_id: bytes} of every trial folder in the study's storage."""
    trials = at(study_dir) / TRIALS_DIR
    return {trial_id: (trials / trial_id).disk_bytes() for trial_id in trials.children()}
