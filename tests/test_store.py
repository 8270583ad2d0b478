"""The results store: rows keyed by (trial, step), atomic files, failures as rows."""
import pandas as pd

from study.storage import store
from study.trial.config import TrialConfig


def test_rows_replace_by_step_and_merge_without_duplicates(tmp_path):
    config = TrialConfig.from_dict({"penalty": "none", "penalty_weight": 0.0})
    trial_dir = tmp_path / store.TRIALS_DIR / config.trial_id
    rows = store.TrialRows(trial_dir, {"study": "s", "arm": "a"}, config)
    rows.add(150, {"fid_domain": 3.0, "score": 3.0, "status": "running"})
    rows.add(300, {"fid_domain": 2.0, "score": 2.0, "status": "running"})
    # A resumed trial re-evaluates step 300: the row is replaced, not duplicated.
    again = store.TrialRows(trial_dir, {"study": "s", "arm": "a"}, config)
    again.add(300, {"fid_domain": 2.0, "score": 2.0, "status": "running"})
    again.mark_final("completed")
    frame = store.collect(tmp_path)
    assert list(frame["step"]) == [150, 300]
    assert list(frame["final"]) == [False, True]
    assert frame["status"].eq("completed").all()
    assert frame["trial_id"].eq(config.trial_id).all() and frame["learning_rate"].eq(config.learning_rate).all()
    assert pd.read_parquet(tmp_path / store.RESULTS_FILE).equals(frame)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_trial_that_failed_before_evaluating_is_one_row_with_its_reason(tmp_path):
    config = TrialConfig()
    rows = store.TrialRows(tmp_path / store.TRIALS_DIR / config.trial_id, {"study": "s"}, config)
    rows.mark_final("failed", error="MemoryError: out of memory", step=40)
    frame = store.collect(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["status"] == "failed" and row["error"] == "MemoryError: out of memory" and row["step"] == 40
    assert row["final"] and pd.isna(row["fid_domain"])


def test_an_empty_study_collects_to_an_empty_table_with_the_schema(tmp_path):
    frame = store.collect(tmp_path)
    assert len(frame) == 0 and {"trial_id", "step", "learning_rate", "fid_domain", "status"} <= set(frame.columns)
