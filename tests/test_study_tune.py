"""Packing of trials into Ray trials (`--pack`), and skipping configurations a pack already finished."""
import collections

import pandas as pd
import pytest

from study.storage import store
from study.sweep import tune
from study.trial.config import TrialConfig
from study.trial.train import program_key


def _table1_trials():
    import argparse

    from study.sweep import cli as run

    args = run.build_parser().parse_args(["--space", "table1", "--dry-run"])
    _, _, trials = run.plan_trials(args)
    return trials


@pytest.mark.parametrize("total, slots, expected", [(144, 2, 18), (144, 64, 1), (2, 2, 1), (10, 2, 2), (1, 1, 1)])
def test_auto_pack_size_keeps_four_packs_per_slot(total, slots, expected):
    assert tune.auto_pack_size(total, slots) == expected


def test_parse_pack_accepts_auto_and_positive_ints():
    assert tune.parse_pack("auto") == "auto" and tune.parse_pack("AUTO") == "auto"
    assert tune.parse_pack("3") == 3 and tune.parse_pack(2) == 2
    for bad in ("0", "-1", "x", None):
        with pytest.raises(ValueError, match="must be >= 1 or 'auto'"):
            tune.parse_pack(bad)


def test_table1_default_on_two_cpus_packs_one_program_per_ray_trial():
    trials = _table1_trials()
    assert len(trials) == 144
    packs = tune.pack_trials(trials, tune.auto_pack_size(len(trials), 2))
    # 8 arms, one compiled program each (n_dis is traced): the 24-trial GP arms in two
    # packs of 12, the 12-trial arms in one; no pack mixes programs.
    assert len(packs) == 12 and {len(p) for p in packs} == {12}
    programs = [program_key(TrialConfig.from_dict(p[0])) for p in packs]
    for pack in packs:
        assert len({program_key(TrialConfig.from_dict(t)) for t in pack}) == 1
    assert len(set(programs[:8])) == 8  # every program's first pack before any second one
    flat = [TrialConfig.from_dict(t).trial_id for p in packs for t in p]
    assert collections.Counter(flat) == collections.Counter(TrialConfig.from_dict(t).trial_id for t in trials)


def test_packs_are_balanced_and_longest_first():
    trials = _table1_trials()[:30]
    packs = tune.pack_trials(trials, 7)
    sizes = [len(p) for p in packs]
    assert sizes == sorted(sizes, reverse=True)
    assert max(sizes) <= 7 and max(sizes) - min(sizes) <= 7
    per_program = collections.defaultdict(list)
    for pack in packs:
        per_program[program_key(TrialConfig.from_dict(pack[0]))].append(len(pack))
    for lengths in per_program.values():
        assert max(lengths) - min(lengths) <= 1


def test_pack_of_one_interleaves_programs_and_keeps_their_order():
    trials = _table1_trials()
    packs = tune.pack_trials(trials, 1)
    assert all(len(p) == 1 for p in packs) and len(packs) == len(trials)
    key = lambda t: program_key(TrialConfig.from_dict(t))  # noqa: E731
    assert len({key(p[0]) for p in packs[:8]}) == 8  # the first 8 Ray trials compile 8 different programs
    for program in {key(t) for t in trials}:
        assert [p[0] for p in packs if key(p[0]) == program] == [t for t in trials if key(t) == program]


def test_finished_row_only_for_completed_or_diverged_trials(tmp_path):
    config = TrialConfig.from_dict({"scale": "tiny"})
    assert store.finished_row(tmp_path / "absent") is None
    rows = store.TrialRows(tmp_path, {"study": "t"}, config)
    rows.add(75, {"score": 3.0})
    assert store.finished_row(tmp_path) is None  # running: must be resumed, not skipped
    rows.mark_final("failed", error="boom")
    assert store.finished_row(tmp_path) is None  # failed: retried
    rows.add(150, {"score": 2.0})
    rows.mark_final("completed")
    final = store.finished_row(tmp_path)
    assert final["step"] == 150 and final["status"] == "completed" and final["score"] == 2.0
    frame = pd.read_parquet(tmp_path / store.ROWS_FILE)
    assert frame["final"].sum() == 1


def test_progress_counts_packed_configurations_as_they_finish(tmp_path):
    import io

    stream = io.StringIO()
    progress = tune.Progress(5, tmp_path, stream=stream)
    progress.result("a", {"pack_index": 0, "step": 50, "train_steps": 100, "score": 9.0})
    assert progress.done == 0
    progress.result("a", {"pack_index": 0, "step": 100, "train_steps": 100, "score": 7.0})
    progress.result("a", {"pack_index": 1, "step": 40, "train_steps": 100, "diverged": True, "score": float("nan")})
    progress.result("a", {"pack_index": 1, "step": 40, "train_steps": 100, "diverged": True})  # reported twice
    assert (progress.done, progress.diverged, progress.best) == (2, 1, 7.0)
    progress.finished("a", 3)  # the pack's third configuration ended without a report seen here
    assert progress.done == 3
    progress.result("b", {"pack_index": 0, "step": 100, "train_steps": 100, "score": 8.0})
    progress.errored("b", 2)
    assert (progress.done, progress.failed) == (4, 1)
    assert stream.getvalue().splitlines()[-1].split("configs done ")[1].startswith("4/5")
