"""The `rerun` space: the best settings of a finished study, re-trained with new seeds.

    python -m study.run --space rerun --from studies/table1-... --top 5 --seeds 3

The paper re-ran its best models with several seeds; a single seed's FID hides a seed
spread that is often as large as the gaps between arms. This module turns a finished
study's results (one row per trial and evaluation) into the trial list of such a rerun.
It is plain data processing over the results table: no Ray, no JAX.

Rules (written down because reports depend on them):
- A trial's score is its minimum finite `score` (FID, or the domain FID) over its
  evaluations, as in the paper; diverged and failed trials have none and are never "best".
- A *setting* is a trial's configuration without its `seed`. When the source study ran
  several seeds of one setting, the setting's score is the mean of its seeds' scores.
- The best `top` settings are chosen **per arm** (architecture, loss, normalization,
  penalty, dataset), so every arm of the source study gets its seed variance; an arm with
  fewer finished settings contributes those it has.
- New seeds start after the largest seed the source study used, so no rerun trial repeats
  a source trial bit for bit.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Iterable, Mapping, Sequence

from study.storage.location import StorageError, at
from study.trial.config import value_before_field_existed

ARM_FIELDS = ("architecture", "loss", "normalization", "penalty", "dataset")
RESULTS_FILE = "results.parquet"


class RerunError(ValueError):
    """A source study that cannot be rerun (one line, names the problem)."""


def load_results(study_dir: pathlib.Path | str):
    """The source study's results table (`STUDY_DIR/results.parquet`)."""


    try:
        path = at(study_dir) / RESULTS_FILE
        if not path.exists():
            raise RerunError(f"--from {study_dir}: no {RESULTS_FILE} there; is it a finished study directory?")
        return path.read_parquet()
    except (StorageError, OSError) as error:
        raise RerunError(f"--from {study_dir}: cannot read {RESULTS_FILE}: {str(error).splitlines()[0]}") from None


def _clean(value: Any) -> Any:
    """Parquet stores a None of an optional float field as NaN; a config wants None back."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars -> Python values (JSON, TrialConfig)
        return value.item()
    return value


def best_settings(results, fields: Sequence[str], top: int,
                  arm_filter: Mapping[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """The best `top` settings per arm of a results table, best first within each arm.

    results: a DataFrame with a `trial_id`, a `score` per row and every name of `fields`.
    fields: the configuration fields (TrialConfig's), `seed` among them.
    Returns one dict per chosen setting: the configuration without `seed`, plus
    "source_score" (the setting's mean over seeds of each trial's minimum score),
    "source_trials" (its trial ids) and "source_rank" (1 = best of its arm).
    """
    if top < 1:
        raise RerunError(f"--top={top} is not allowed; it must be >= 1")
    results = _with_fields_older_studies_lack(results, fields)
    missing = [f for f in ("trial_id", "score", *fields) if f not in results.columns]
    if missing:
        raise RerunError(f"the source results lack column(s) {', '.join(missing)}; not a study of this platform?")
    setting_fields = [f for f in fields if f != "seed"]
    scores = results.groupby("trial_id")["score"].min()  # NaN for trials with no finite score
    per_trial = results.drop_duplicates("trial_id").set_index("trial_id")[list(fields)]
    per_trial = per_trial.assign(trial_score=scores)
    per_trial = per_trial[per_trial["trial_score"].notna()]
    for field, allowed in (arm_filter or {}).items():
        if field not in per_trial.columns:
            raise RerunError(f"--arms field {field!r} is not a configuration field")
        per_trial = per_trial[per_trial[field].astype(str).isin(allowed)]
    if per_trial.empty:
        raise RerunError("the source study has no trial with a finite score (all diverged, failed or filtered out)")
    # Group by a text key: optional fields hold None/NaN, which groupby would drop.
    def key(columns: Sequence[str]) -> list[str]:
        return [repr(tuple(_clean(v) for v in row)) for row in per_trial[list(columns)].itertuples(index=False)]

    per_trial = per_trial.assign(_setting=key(setting_fields), _arm=key(ARM_FIELDS))
    chosen: list[dict[str, Any]] = []
    for _, arm_trials in per_trial.groupby("_arm", sort=True):
        settings = []
        for _, group in arm_trials.groupby("_setting", sort=False):
            first = group.iloc[0]
            settings.append({
                **{f: _clean(first[f]) for f in setting_fields},
                "source_score": float(group["trial_score"].mean()),
                "source_trials": sorted(group.index.astype(str)),
            })
        settings.sort(key=lambda s: (s["source_score"], s["source_trials"][0]))
        for rank, setting in enumerate(settings[:top], start=1):
            chosen.append({**setting, "source_rank": rank})
    return chosen


def _with_fields_older_studies_lack(results, fields: Sequence[str]):
    """Results of a study run before some config fields existed get those columns, holding
    what its trials ran with (`study.trial.config.value_before_field_existed`)."""

    added = {}
    for field in fields:
        if field not in results.columns:
            try:
                added[field] = value_before_field_existed(field)
            except KeyError:
                continue  # a field every study records: reported as missing below
    return results.assign(**added) if added else results


def rerun_trials(results, fields: Sequence[str], top: int, seeds: int,
                 arm_filter: Mapping[str, set[str]] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(trial dicts, chosen settings): each chosen setting once per new seed.

    Trial dicts hold only configuration fields (valid `TrialConfig.from_dict` input);
    the chosen settings (see `best_settings`) say where each came from, for the manifest.
    """
    if seeds < 1:
        raise RerunError(f"--seeds={seeds} is not allowed; it must be >= 1")
    settings = best_settings(results, fields, top, arm_filter)
    first_seed = int(results["seed"].max()) + 1
    new_seeds = list(range(first_seed, first_seed + seeds))
    trials = []
    for setting in settings:
        config = {k: v for k, v in setting.items() if not k.startswith("source_")}
        trials.extend({**config, "seed": seed} for seed in new_seeds)
    for setting in settings:
        setting["seeds"] = new_seeds
    return trials, settings


def arms_of(settings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The distinct arms (ARM_FIELDS) of the chosen settings, in order."""
    seen: dict[tuple, dict[str, Any]] = {}
    for setting in settings:
        key = tuple(setting.get(f) for f in ARM_FIELDS)
        seen.setdefault(key, {f: setting.get(f) for f in ARM_FIELDS})
    return list(seen.values())
