"""The trial loop's periodic actions (study.trial.hooks), each alone, without training anything."""
import math
import types

import numpy as np
import pytest

from study.trial.hooks import (
    CHECK_EVERY,
    COLLAPSE_CHECKS,
    BuildRow,
    Context,
    Diverged,
    DivergenceCheck,
    Evaluate,
    PeriodicAction,
    ProgressLine,
    ReportRow,
    SaveCheckpoint,
    Timing,
    WriteRow,
    WriteSamples,
)


def _metrics(d_loss=0.5, grad=1.0, finite=True, g_loss=0.7):
    return {"d_loss": d_loss, "g_loss": g_loss, "d_grad_norm": grad, "g_grad_norm": 1.0, "finite": finite}


def _context(**fields):
    return Context(clock=Timing(10, 20, images_per_call=32), **fields)


def test_periodic_action_is_due_every_n_steps_and_at_the_last():
    action = PeriodicAction(every_steps=10, last_step=25)
    assert [s for s in range(1, 26) if action.due(s)] == [10, 20, 25]


def test_divergence_check_runs_every_n_calls_or_at_an_evaluation():
    check = DivergenceCheck(every_steps=100, last_step=1000)
    context = _context(metrics=_metrics())
    context.clock.calls = 3
    check(3, context)  # between checks: no host transfer
    assert context.host_metrics == {}
    context.clock.calls = CHECK_EVERY
    check(CHECK_EVERY, context)
    assert context.host_metrics == {"d_loss": 0.5, "g_loss": 0.7, "d_grad_norm": 1.0, "g_grad_norm": 1.0}
    context.clock.calls, context.metrics = 7, _metrics(d_loss=0.25)
    check(100, context)  # an evaluation
    assert context.host_metrics["d_loss"] == 0.25


def test_non_finite_values_diverge_at_once_naming_them():
    context = _context(metrics=_metrics(d_loss=math.nan, finite=False))
    with pytest.raises(Diverged, match=r"non-finite d_loss at step 40"):
        DivergenceCheck(100, 1000)(40, context)
    assert context.host_metrics == {}  # the last checked losses stay for the diverged row


def test_a_collapsed_discriminator_diverges_after_consecutive_checks_only():
    check = DivergenceCheck(100, 1000)
    for i in range(COLLAPSE_CHECKS - 1):
        check.check(i, _metrics(d_loss=1e-4, grad=1e4))
    check.check(99, _metrics())  # one healthy check resets the run
    for i in range(COLLAPSE_CHECKS - 1):
        check.check(i, _metrics(d_loss=1e-4, grad=1e4))
    with pytest.raises(Diverged, match="collapsed"):
        check.check(500, _metrics(d_loss=1e-4, grad=1e4))


def test_timing_sets_the_compiling_call_apart_and_counts_the_others():
    clock = Timing(10, 20, images_per_call=32)
    clock.resume({"device_seconds": 5.0, "wall_time_s": 100.0})
    clock.start_span()
    context = Context(clock)
    clock.count_group(1, context)
    assert clock.calls == 0 and clock.compile_seconds >= 0 and clock.device_seconds >= 5.0
    clock.count_group(2, context)
    clock.count_group(3, context)
    assert clock.calls == 2
    clock.start_eval(None)
    fields = clock.stop_eval()
    assert list(fields) == ["wall_time_s", "device_seconds", "images_per_s", "compile_seconds", "eval_seconds"]
    assert fields["wall_time_s"] >= 100.0 and fields["device_seconds"] == clock.device_seconds
    assert fields["images_per_s"] == pytest.approx(2 * 32 / clock.train_seconds)
    clock.next_span(5, context)  # not an evaluation
    assert clock.calls == 2
    clock.next_span(10, context)
    assert clock.calls == 0
    clock.start_eval(None)
    assert math.isnan(clock.stop_eval()["images_per_s"])  # no calls since the previous evaluation


class _Rows:
    def __init__(self, calls):
        self.rows, self.calls, self.best = {}, calls, None

    def add(self, step, row):
        self.calls.append(("row", step))
        self.rows[step] = dict(row)


class _Checkpoints:
    def __init__(self, calls):
        self.calls = calls

    def save(self, step, state, meta):
        self.calls.append(("save", step, meta["wall_time_s"]))

    def prune(self, scores, finished):
        self.calls.append(("prune", dict(scores), finished))


def test_row_then_checkpoint_then_budget_at_evaluations_only():
    calls = []
    rows = _Rows(calls)
    write, save = WriteRow(10, 20, rows), SaveCheckpoint(10, 20, _Checkpoints(calls), rows)
    for step in (5, 10, 20):
        context = _context(row={"score": float(step), "wall_time_s": step + 0.5})
        write(step, context)
        save(step, context)
    assert calls == [("row", 10), ("save", 10, 10.5), ("prune", {10: 10.0}, False),
                     ("row", 20), ("save", 20, 20.5), ("prune", {10: 10.0, 20: 20.0}, False)]


def test_progress_line_format():
    lines = []
    row = {"score": 1.23456, "d_loss": 0.5, "g_loss": 0.25, "images_per_s": 99.6}
    ProgressLine(10, 20, "abc", lines.append)(10, _context(row=row))
    ProgressLine(10, 20, "abc", lines.append)(11, _context(row=row))
    assert lines == ["[abc] step 10/20 score 1.235 d_loss 0.5000 g_loss 0.2500 100 img/s"]


class _Evaluator:
    protocol = {"fid_real_samples": 4}

    def __init__(self):
        self.sample_labels = "unset"

    def evaluate(self, sample_fn, sample_labels=None):
        self.sample_labels = sample_labels
        return {"fid_domain": float(np.asarray(sample_fn(0, 2)).sum()), "kid_domain": np.float32(0.5)}

    def requested_labels(self):
        return [1, 0, 1, 0]

    def batch_labels(self, labels, index):
        return labels[index * 2:(index + 1) * 2]


class _Program:
    def __init__(self):
        self.calls = []

    def sample(self, generator, index, size, labels=None):
        self.calls.append((generator, index, size, None if labels is None else list(labels)))
        return np.ones((size, 2, 2, 1))


def test_an_evaluation_hands_its_results_grid_and_row_to_the_later_actions(tmp_path):
    evaluator, program, written = _Evaluator(), _Program(), []
    context = _context(state=types.SimpleNamespace(generator="G"), host_metrics={"d_loss": 0.5, "g_loss": 0.25})
    context.clock.start_span()
    actions = [Evaluate(10, 20, evaluator, program, grid_size=3, grid_labels=np.array([0, 0, 1])),
               WriteSamples(10, 20, tmp_path, lambda grid, data_range, path: written.append((grid.shape, path.name)),
                            (0.0, 1.0)),
               BuildRow(10, 20, evaluator)]
    for action in actions:
        action(5, context)
    assert program.calls == [] and written == [] and context.row == {}
    for action in actions:
        action(10, context)
    assert program.calls == [("G", 0, 2, [1, 0]), ("G", 0, 3, [0, 0, 1])]  # evaluation, then the grid
    assert evaluator.sample_labels.dtype == np.int32 and list(evaluator.sample_labels) == [1, 0, 1, 0]
    assert written == [((3, 2, 2, 1), "samples_step00000010.png"), ((3, 2, 2, 1), "samples.png")]
    row = context.row
    assert list(row) == ["fid_domain", "kid_domain", "fid_real_samples", "d_loss", "g_loss", "wall_time_s",
                         "device_seconds", "images_per_s", "compile_seconds", "eval_seconds", "diverged", "status",
                         "error", "score"]
    assert row["score"] == row["fid_domain"] == 8.0 and type(row["kid_domain"]) is float
    assert (row["diverged"], row["status"], row["error"]) == (False, "running", "")


def test_an_unconditional_evaluation_asks_for_no_labels():
    evaluator, program = _Evaluator(), _Program()
    context = _context(state=types.SimpleNamespace(generator="G"))
    context.clock.start_span()
    Evaluate(10, 20, evaluator, program, grid_size=3, grid_labels=None)(20, context)
    assert program.calls == [("G", 0, 2, None), ("G", 0, 3, None)] and evaluator.sample_labels is None


def test_report_row_sends_the_stored_row_with_the_best_score():
    rows, sent = _Rows([]), []
    rows.rows, rows.best = {10: {"score": 3.0}}, 2.0
    ReportRow(10, 20, rows, sent.append)(10, _context())
    ReportRow(10, 20, rows, sent.append)(11, _context())
    ReportRow(10, 20, rows, None)(10, _context())
    assert sent == [{"score": 3.0, "best_score": 2.0}]
