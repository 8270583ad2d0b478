"""Reading study directories: `results.parquet` + `manifest.json` -> one rows table.

This module knows the study directory contract (study.schema, written by `study.run`) and
nothing else: of the `study` package it imports only study.schema (plain data), never
JAX or Ray, so a report builds on a laptop with pandas alone.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd

# The study's record contract (dependency-free: importing it pulls in no JAX or Ray).
from study.schema import (  # noqa: F401
    ABLATION_FIELDS,
    AXES,
    CONFIG_FIELDS,
    HYPERPARAMETERS,
    METRIC_COLUMNS,
    PROGRESS_COLUMNS,
    PROTOCOL_COLUMNS,
    REFERENCE_KINDS,
    REQUIRED_COLUMNS,
    STATUSES,
    TRICK_DEFAULTS,
)


class StudyDataError(ValueError):
    """Unreadable or malformed study input. The message is one line naming the path/value."""



@dataclasses.dataclass(frozen=True)
class Study:
    """One study directory as read from disk."""

    name: str
    directory: pathlib.Path
    manifest: dict[str, Any] | None  # None: manifest.json missing
    manifest_problem: str  # "" or why the manifest could not be used
    has_results_file: bool


@dataclasses.dataclass(frozen=True)
class StudyData:
    """Several studies merged: one rows table plus each study's manifest."""

    rows: pd.DataFrame  # one row per (study, trial, evaluation); `study` distinguishes
    studies: tuple[Study, ...]

    @property
    def is_empty(self) -> bool:
        return self.rows.empty


def load_studies(study_dirs: list[str | pathlib.Path]) -> StudyData:
    """Reads and merges study directories; raises `StudyDataError` on unusable input."""
    if not study_dirs:
        raise StudyDataError("no study directory given; expected at least one STUDY_DIR")
    resolved = [pathlib.Path(d).expanduser().resolve() for d in study_dirs]
    seen: set[pathlib.Path] = set()
    for directory in resolved:
        if directory in seen:
            raise StudyDataError(f"study directory {directory} is given twice; give each study once")
        seen.add(directory)
    studies, frames = [], []
    used_names: set[str] = set()
    for directory in resolved:
        study, rows = _load_one(directory)
        name = study.name
        if name in used_names:
            # Two directories of the same study name (e.g. two "smoke" runs): keep them
            # apart, since the same trial_id may occur in both.
            name = f"{name} ({directory.name})"
            if name in used_names:
                raise StudyDataError(
                    f"study name {study.name!r} of {directory} clashes with another study; rename one directory"
                )
            study = dataclasses.replace(study, name=name)
            rows["study"] = name
        used_names.add(name)
        studies.append(study)
        frames.append(rows)
    non_empty = [f for f in frames if not f.empty]
    rows = pd.concat(non_empty, ignore_index=True) if non_empty else _empty_rows()
    return StudyData(rows=_normalise_dtypes(rows), studies=tuple(studies))


def _load_one(directory: pathlib.Path) -> tuple[Study, pd.DataFrame]:
    if not directory.exists():
        raise StudyDataError(f"study directory {directory} does not exist; expected a directory written by python -m study.run")
    if not directory.is_dir():
        raise StudyDataError(f"study path {directory} is not a directory; expected a study directory")
    results_path = directory / "results.parquet"
    manifest_path = directory / "manifest.json"
    if not results_path.exists() and not manifest_path.exists():
        raise StudyDataError(
            f"{directory} holds neither results.parquet nor manifest.json; expected a study directory written by python -m study.run"
        )
    manifest, problem = None, ""
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
            if not isinstance(manifest, dict):
                manifest, problem = None, f"{manifest_path} is not a JSON object"
        except (OSError, json.JSONDecodeError) as error:
            problem = f"{manifest_path} is not valid JSON ({error})"
    else:
        problem = f"{manifest_path} is missing"

    if results_path.exists():
        try:
            rows = pd.read_parquet(results_path)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise StudyDataError(f"{results_path} cannot be read as parquet ({type(error).__name__}: {error})") from None
    else:
        rows = _empty_rows()
    if not rows.empty:
        missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
        if missing:
            raise StudyDataError(
                f"{results_path} lacks column {missing[0]!r}; expected the results schema (trial_id, arm, step, status, ...)"
            )
    name = _study_name(rows, manifest, directory)
    rows = rows.copy()
    rows["study"] = name
    rows["study_dir"] = str(directory)
    return Study(name, directory, manifest, problem, results_path.exists()), rows


def _study_name(rows: pd.DataFrame, manifest: dict | None, directory: pathlib.Path) -> str:
    if "study" in rows.columns and not rows.empty:
        names = rows["study"].dropna().astype(str).unique()
        if len(names) == 1:
            return str(names[0])
        if len(names) > 1:
            raise StudyDataError(
                f"{directory / 'results.parquet'} mixes studies {sorted(names)[:3]}; expected one study per directory"
            )
    if manifest and manifest.get("study"):
        return str(manifest["study"])
    return directory.name


def _empty_rows() -> pd.DataFrame:
    columns = ["study", "trial_id", "arm", "search", "round", *CONFIG_FIELDS, *PROGRESS_COLUMNS,
               *METRIC_COLUMNS, *PROTOCOL_COLUMNS[:-1], "diverged", "status", "error", "final"]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _normalise_dtypes(rows: pd.DataFrame) -> pd.DataFrame:
    """Fills absent optional columns and coerces numbers, so later code needs no checks.

    Unknown extra columns are kept untouched.
    """
    rows = rows.copy()
    defaults: dict[str, Any] = {"search": "unknown", "round": 0, "error": "", "final": False, "diverged": False}
    for column, value in defaults.items():
        if column not in rows.columns:
            rows[column] = value
    for column in (*METRIC_COLUMNS, *PROGRESS_COLUMNS):
        if column not in rows.columns:
            rows[column] = np.nan
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype(float)
    for column in CONFIG_FIELDS:
        if column not in rows.columns:
            rows[column] = np.nan if column not in AXES else "unknown"
    for column in HYPERPARAMETERS:
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype(float)
    rows["round"] = pd.to_numeric(rows["round"], errors="coerce").fillna(0).astype(int)
    for column in ("final", "diverged"):
        rows[column] = rows[column].fillna(False).astype(bool)
    for column in ("study", "trial_id", "arm", "search", "status", *AXES):
        rows[column] = rows[column].astype(object).where(rows[column].notna(), "unknown").astype(str)
    rows["error"] = rows["error"].astype(object).where(rows["error"].notna(), "").astype(str)
    return rows
