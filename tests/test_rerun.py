"""The `rerun` space: best settings per arm of a finished study, with new seeds."""
import json

import numpy as np
import pandas as pd
import pytest

from search_spaces import rerun
from study.sweep import cli as run
from study.trial.config import TrialConfig

FIELDS = TrialConfig.field_names()


def _results(rows):
    """A results table in the platform's form: one row per (trial, evaluation)."""
    records = []
    for overrides, seed, scores in rows:
        config = TrialConfig.from_dict({"scale": "tiny", **overrides, "seed": seed})
        for step, score in zip((75, 150), scores):
            records.append({**config.to_dict(), "trial_id": config.trial_id, "step": step, "score": score})
    return pd.DataFrame(records)


NAN = float("nan")
ROWS = [
    # arm spectral/gp: lr 1e-3 has the lowest minimum (4.0 at step 75, min over checkpoints)
    ({"normalization": "spectral", "penalty": "gp", "learning_rate": 2e-4}, 0, (9.0, 7.0)),
    ({"normalization": "spectral", "penalty": "gp", "learning_rate": 1e-3}, 0, (4.0, 8.0)),
    ({"normalization": "spectral", "penalty": "gp", "learning_rate": 1e-4}, 0, (NAN, NAN)),  # diverged
    # arm none/none: the 2e-4 setting ran with two seeds (mean 6.0); 1e-3 once (5.5)
    ({"normalization": "none", "penalty": "none", "penalty_weight": 0.0, "learning_rate": 2e-4}, 0, (8.0, 5.0)),
    ({"normalization": "none", "penalty": "none", "penalty_weight": 0.0, "learning_rate": 2e-4}, 1, (7.0, 9.0)),
    ({"normalization": "none", "penalty": "none", "penalty_weight": 0.0, "learning_rate": 1e-3}, 0, (5.5, 6.0)),
]


def test_best_settings_per_arm_by_minimum_score_mean_over_seeds():
    settings = rerun.best_settings(_results(ROWS), FIELDS, top=2)
    by_arm = {}
    for s in settings:
        by_arm.setdefault((s["normalization"], s["penalty"]), []).append(s)
    gp = by_arm[("spectral", "gp")]
    assert [s["learning_rate"] for s in gp] == [1e-3, 2e-4]
    assert [s["source_score"] for s in gp] == [4.0, 7.0]
    assert [s["source_rank"] for s in gp] == [1, 2]
    plain = by_arm[("none", "none")]
    # 2e-4: seeds 0 and 1 have minima 5.0 and 7.0 -> mean 6.0, behind 1e-3's 5.5
    assert [s["learning_rate"] for s in plain] == [1e-3, 2e-4]
    assert plain[1]["source_score"] == pytest.approx(6.0) and len(plain[1]["source_trials"]) == 2
    assert all("seed" not in s for s in settings)


def test_rerun_trials_use_new_seeds_and_never_pick_diverged_trials():
    trials, settings = rerun.rerun_trials(_results(ROWS), FIELDS, top=5, seeds=3)
    # the diverged setting is left out: 2 + 2 settings, 3 seeds each
    assert len(settings) == 4 and len(trials) == 12
    assert {t["seed"] for t in trials} == {2, 3, 4}  # the source used seeds 0 and 1
    assert 1e-4 not in {t["learning_rate"] for t in trials}
    configs = [TrialConfig.from_dict(t) for t in trials]
    assert len({c.trial_id for c in configs}) == 12
    assert all(c.generator_bn_epsilon is None and c.discriminator_learning_rate is None for c in configs)


def test_rerun_filters_arms_and_rejects_bad_values():
    trials, _ = rerun.rerun_trials(_results(ROWS), FIELDS, top=1, seeds=1, arm_filter={"penalty": {"gp"}})
    assert [(t["penalty"], t["learning_rate"]) for t in trials] == [("gp", 1e-3)]
    with pytest.raises(rerun.RerunError, match="--top=0 is not allowed"):
        rerun.rerun_trials(_results(ROWS), FIELDS, top=0, seeds=1)
    with pytest.raises(rerun.RerunError, match="--seeds=0 is not allowed"):
        rerun.rerun_trials(_results(ROWS), FIELDS, top=1, seeds=0)
    all_diverged = _results([({"learning_rate": 2e-4}, 0, (NAN, NAN))])
    with pytest.raises(rerun.RerunError, match="no trial with a finite score"):
        rerun.rerun_trials(all_diverged, FIELDS, top=1, seeds=1)


def test_cli_dry_run_json_lists_the_rerun(tmp_path, capsys):
    _results(ROWS).to_parquet(tmp_path / "results.parquet")
    assert run.main(["--space", "rerun", "--from", str(tmp_path), "--top", "1", "--seeds", "2",
                     "--dry-run", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    configs = [TrialConfig.from_dict(json.loads(line)) for line in lines]
    assert sorted((c.normalization, c.learning_rate, c.seed) for c in configs) == [
        ("none", 1e-3, 2), ("none", 1e-3, 3), ("spectral", 1e-3, 2), ("spectral", 1e-3, 3)]


@pytest.mark.parametrize("args, fragment", [
    (["--space", "rerun"], "error: --space rerun needs --from STUDY_DIR"),
    (["--space", "rerun", "--from", "/nonexistent/study"], "error: --from /nonexistent/study: no results.parquet"),
    (["--space", "rerun", "--from", "X", "--scale", "small"], "error: --scale does not apply to --space rerun"),
    (["--space", "table1", "--top", "3"], "error: --top applies only to --space rerun"),
    (["--space", "table1", "--from", "X"], "error: --from applies only to --space rerun"),
])
def test_rerun_usage_errors_are_one_line(args, fragment, capsys):
    assert run.main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(fragment), err
    assert len(err.splitlines()) == 1


def test_a_study_from_before_adam_form_existed_is_rerun_with_the_adam_it_ran():
    """Results written before `adam_form` existed (optax's Adam was the only form) lack the
    column; their rerun keeps optax's Adam instead of refusing or silently switching to TF's."""
    old = _results(ROWS).drop(columns=["adam_form"])
    trials, _ = rerun.rerun_trials(old, FIELDS, top=1, seeds=1)
    assert trials and {t["adam_form"] for t in trials} == {"optax"}
    with pytest.raises(rerun.RerunError, match="lack column.*learning_rate"):
        rerun.rerun_trials(old.drop(columns=["learning_rate"]), FIELDS, top=1, seeds=1)
