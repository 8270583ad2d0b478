"""Reading study directories: `results.parquet` + `manifest.json` -> one rows table.

This module knows the study directory contract (written by `study.run`) and nothing
else: it never imports the `study`/`models` packages or JAX, so a report builds on a
laptop with pandas alone. The column names below mirror `study.config.TrialConfig`.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd


class StudyDataError(ValueError):
    """Unreadable or malformed study input. The message is one line naming the path/value."""


# The TrialConfig fields, in schema order (study/config.py). Kept here as data so that
# analysis needs no import of `study`.
CONFIG_FIELDS: tuple[str, ...] = (
    "dataset", "architecture", "loss", "normalization", "penalty",
    "penalty_weight", "learning_rate", "beta1", "beta2", "discriminator_steps",
    "batch_size", "z_dim", "train_steps", "eval_every", "seed", "scale", "image_size",
    "width_multiplier", "eval_samples", "fid_split", "discriminator_learning_rate",
    "adam_epsilon", "adam_form", "weight_clip", "began_gamma", "began_k_learning_rate",
    "resnet_d_shortcut", "resnet_d_cin", "resnet_d_opt", "resnet_d_pooling", "resnet_tanh",
    "generator_bn_epsilon", "label_smoothing", "label_flip_probability", "instance_noise_std",
    "instance_noise_anneal_steps", "latent_distribution", "discriminator_optimizer", "discriminator_sgd_momentum",
    "minibatch_stddev_group_size", "conditioning", "acgan_class_weight", "infogan_categories", "infogan_continuous",
    "infogan_weight",
)
# The fixed axes a study compares (the paper's "cells").
AXES: tuple[str, ...] = ("loss", "normalization", "penalty", "architecture", "dataset")
# The swept hyperparameters of Tables 1 and 2.
HYPERPARAMETERS: tuple[str, ...] = (
    "learning_rate", "penalty_weight", "beta1", "beta2", "discriminator_steps",
)
ABLATION_FIELDS: tuple[str, ...] = (
    "resnet_d_shortcut", "resnet_d_cin", "resnet_d_opt", "resnet_d_pooling", "resnet_tanh",
    "generator_bn_epsilon",
)
# The training tricks (search_spaces.tricks.TRICK_DEFAULTS) and their defaults, the paper's
# training: a trial with none of them at another value is a baseline. Results written before
# these fields existed lack the columns and are all baselines.
TRICK_DEFAULTS: dict[str, Any] = {
    "label_smoothing": 0.0, "label_flip_probability": 0.0, "instance_noise_std": 0.0,
    "latent_distribution": "uniform", "discriminator_optimizer": "adam", "discriminator_sgd_momentum": 0.9,
    "discriminator_learning_rate": None, "minibatch_stddev_group_size": 0,
}
METRIC_COLUMNS: tuple[str, ...] = (
    "fid", "fid_domain", "kid", "kid_domain", "is", "is_domain", "precision", "recall",
    "precision_domain", "recall_domain", "ms_ssim", "d_loss", "g_loss",
    "classes_covered_domain", "mode_score_domain", "am_score_domain",
    # issue 18: two-sample test and within-class diversity (every evaluation), conditional scores
    "m_is", "m_is_domain", "one_nn_accuracy", "one_nn_real_accuracy", "one_nn_fake_accuracy",
    "one_nn_accuracy_domain", "one_nn_real_accuracy_domain", "one_nn_fake_accuracy_domain",
    "gan_test_domain", "gan_train_domain", "fid_domain_class_mean", "fid_domain_class_max", "fid_domain_classes",
)
# Reference points written by the evaluator into every row: `<metric>_ref_<kind>`.
REFERENCE_KINDS: tuple[str, ...] = ("floor", "noise", "mean_image")
PROTOCOL_COLUMNS: tuple[str, ...] = (
    "fid_features", "fid_weights_sha256", "fid_resize", "fid_precision",
    "fid_real_samples", "fid_fake_samples", "fid_split",
)
PROGRESS_COLUMNS: tuple[str, ...] = ("step", "wall_time_s", "device_seconds", "images_per_s")
# Without these a results table cannot be analysed at all.
REQUIRED_COLUMNS: tuple[str, ...] = ("trial_id", "arm", "step", "status")
STATUSES: tuple[str, ...] = ("running", "completed", "diverged", "failed")


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
