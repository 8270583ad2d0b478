"""The trial loop's periodic actions (study.trial.hooks), each alone, without training anything."""
import math

import pytest

from study.trial.hooks import (
    CHECK_EVERY,
    COLLAPSE_CHECKS,
    Diverged,
    DivergenceCheck,
    PeriodicAction,
    ProgressLine,
    SaveCheckpoint,
    WriteRow,
)


def _metrics(d_loss=0.5, grad=1.0, finite=True, g_loss=0.7):
    return {"d_loss": d_loss, "g_loss": g_loss, "d_grad_norm": grad, "g_grad_norm": 1.0, "finite": finite}


def test_periodic_action_is_due_every_n_steps_and_at_the_last():
    action = PeriodicAction(every_steps=10, last_step=25)
    assert [s for s in range(1, 26) if action.due(s)] == [10, 20, 25]


def test_divergence_check_runs_every_n_calls_or_at_an_evaluation():
    check = DivergenceCheck()
    assert check(3, 3, _metrics(), at_eval=False) is None  # between checks: no host transfer
    assert check(CHECK_EVERY, CHECK_EVERY, _metrics(), at_eval=False) == {
        "d_loss": 0.5, "g_loss": 0.7, "d_grad_norm": 1.0, "g_grad_norm": 1.0}
    assert check(7, 7, _metrics(), at_eval=True)["d_loss"] == 0.5


def test_non_finite_values_diverge_at_once_naming_them():
    with pytest.raises(Diverged, match=r"non-finite d_loss at step 40"):
        DivergenceCheck()(40, 10, _metrics(d_loss=math.nan, finite=False), at_eval=False)


def test_a_collapsed_discriminator_diverges_after_consecutive_checks_only():
    check = DivergenceCheck()
    for i in range(COLLAPSE_CHECKS - 1):
        check(i, 0, _metrics(d_loss=1e-4, grad=1e4), at_eval=False)
    check(99, 0, _metrics(), at_eval=False)  # one healthy check resets the run
    for i in range(COLLAPSE_CHECKS - 1):
        check(i, 0, _metrics(d_loss=1e-4, grad=1e4), at_eval=False)
    with pytest.raises(Diverged, match="collapsed"):
        check(500, 0, _metrics(d_loss=1e-4, grad=1e4), at_eval=False)


class _Rows:
    def __init__(self, calls):
        self.rows, self.calls = {}, calls

    def add(self, step, row):
        self.calls.append(("row", step))
        self.rows[step] = dict(row)


class _Checkpoints:
    def __init__(self, calls):
        self.calls = calls

    def save(self, step, state, meta):
        self.calls.append(("save", step))

    def prune(self, scores, finished):
        self.calls.append(("prune", dict(scores), finished))


def test_row_then_checkpoint_then_budget_at_evaluations_only():
    calls = []
    rows = _Rows(calls)
    write, save = WriteRow(10, 20, rows), SaveCheckpoint(10, 20, _Checkpoints(calls), rows)
    for step in (5, 10, 20):
        write(step, {"score": float(step)})
        save(step, state=None, meta={})
    assert calls == [("row", 10), ("save", 10), ("prune", {10: 10.0}, False),
                     ("row", 20), ("save", 20), ("prune", {10: 10.0, 20: 20.0}, False)]


def test_progress_line_format():
    lines = []
    ProgressLine(10, 20, "abc", lines.append)(10, {"score": 1.23456, "d_loss": 0.5, "g_loss": 0.25,
                                                   "images_per_s": 99.6})
    assert lines == ["[abc] step 10/20 score 1.235 d_loss 0.5000 g_loss 0.2500 100 img/s"]
