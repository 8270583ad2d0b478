"""The trial loop's side effects as small periodic actions (the shape of clu.periodic_actions).

`study.trial.loop.run_trial` is a short loop: one train group, then every action in order,
each called as `action(step, context)`. An action decides from the step whether it is due,
does one thing, reads and writes the shared `Context`, and writes only through the trial's
storage (study.storage.location), so each is testable alone. In the loop's order:

    Timing.count_group  after every group: the first call's compilation is timed apart,
                        later calls are counted for images/s
    DivergenceCheck     every CHECK_EVERY train-step calls and at every evaluation: ends
                        the trial (Diverged) on non-finite values or a collapsed D
    Evaluate            at every evaluation: the evaluator's metrics and the sample grid's
                        images (its time starts the evaluation's clock)
    WriteSamples        the 8x8 sample grid, per step and latest
    BuildRow            the results row: metrics, protocol, losses, timing fields
    WriteRow            the row into the trial's rows (study.storage.store.TrialRows)
    SaveCheckpoint      after the row: state + verified digest, then the storage budget
                        (latest and best kept)
    ProgressLine        one plain progress line
    ReportRow           the stored row (plus the best score) to the caller's callback
    Timing.next_span    the next training span starts (checkpoints and reporting are not
                        device time)

Order at an evaluation is rows, then checkpoint: a kill in between re-evaluates that
step on resume and replaces the row with an identical one (bit-identical resume).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

# Divergence: losses or gradients that stop being finite end a trial at once; a
# discriminator whose loss collapses to ~0 while a gradient norm explodes, for
# COLLAPSE_CHECKS consecutive checks (CHECK_EVERY updates apart), ends it too.
CHECK_EVERY = 10  # train-step calls between host-side divergence checks
COLLAPSE_D_LOSS = 1e-3
COLLAPSE_GRAD_NORM = 1e3
COLLAPSE_CHECKS = 5


class Diverged(Exception):
    """Training diverged; the message is the reason recorded in the results."""


def to_host(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def score_of(metrics: Mapping[str, float]) -> float:
    """A trial's objective at one evaluation: Inception FID when available, else the domain FID."""
    for name in ("fid", "fid_domain"):
        value = metrics.get(name)
        if value is not None and math.isfinite(value):
            return float(value)
    return float("nan")


class PeriodicAction:
    """Due every `every_steps` steps and at `last_step` (clu's PeriodicAction, by step)."""

    def __init__(self, every_steps: int, last_step: int):
        self.every_steps = int(every_steps)
        self.last_step = int(last_step)

    def due(self, step: int) -> bool:
        return step % self.every_steps == 0 or step >= self.last_step


class Timing(PeriodicAction):
    """The trial's clock; its evaluation span is the other actions' (due at evaluations).

    wall_time_s: seconds since this run started (setup included) plus the resumed runs'.
    device_seconds: the first call (compilation), training and evaluation, summed over the
    resumed runs; setup, checkpoints and reporting are not counted.
    images_per_s: real images per second of the calls since the previous evaluation (or the
    compiling call), NaN when there were none.
    """

    def __init__(self, every_steps: int, last_step: int, images_per_call: int):
        super().__init__(every_steps, last_step)
        self.images_per_call = int(images_per_call)
        self.started = time.perf_counter()
        self.wall_offset = 0.0
        self.device_seconds = 0.0
        self.compile_seconds: float | None = None
        self.calls = 0  # train-step calls since the span started, the compiling call not counted
        self.span_start = self.eval_start = self.train_seconds = math.nan

    def resume(self, meta: Mapping[str, Any]) -> None:
        """Continues the times a checkpoint recorded (its `meta`)."""
        self.device_seconds = float(meta["device_seconds"])
        self.wall_offset = float(meta["wall_time_s"])

    def start_span(self) -> None:
        self.span_start = time.perf_counter()

    def count_group(self, step: int, context: "Context") -> None:
        """After every group. The first call compiles (or loads from the persistent cache):
        it is timed apart so images/s measures training throughput."""
        if self.compile_seconds is None:
            jax.block_until_ready(context.state)
            self.compile_seconds = time.perf_counter() - self.span_start
            self.device_seconds += self.compile_seconds
            self.start_span()
        else:
            self.calls += 1

    def start_eval(self, state: Any) -> None:
        """The training span ends when its updates are done on the device."""
        jax.block_until_ready(state)
        self.eval_start = time.perf_counter()
        self.train_seconds = self.eval_start - self.span_start

    def stop_eval(self) -> dict[str, Any]:
        """Ends the span (training + evaluation); the row's timing fields, in the row's order."""
        now = time.perf_counter()
        self.device_seconds += now - self.span_start
        return {
            "wall_time_s": self.wall_offset + now - self.started,
            "device_seconds": self.device_seconds,
            "images_per_s": self.calls * self.images_per_call / self.train_seconds if self.calls else float("nan"),
            "compile_seconds": self.compile_seconds,
            "eval_seconds": now - self.eval_start,
        }

    def next_span(self, step: int, context: "Context") -> None:
        """Last at an evaluation: the next span starts, with no calls counted yet."""
        if self.due(step):
            self.start_span()
            self.calls = 0


@dataclasses.dataclass
class Context:
    """What the actions share within one trial. The loop sets `state` and `metrics` after
    every group; an evaluation's actions hand on `results`, `grid` and `row` in order."""

    clock: Timing
    state: Any = None  # the train state after the latest group
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # its device metrics
    host_metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # the latest check's, on the host
    results: dict[str, float] = dataclasses.field(default_factory=dict)  # the evaluator's, at this evaluation
    grid: np.ndarray | None = None  # the sample grid's images, in the data range
    row: dict[str, Any] = dataclasses.field(default_factory=dict)  # this evaluation's results row


class DivergenceCheck(PeriodicAction):
    """Host-side divergence rules; the host metrics go to `context.host_metrics`.

    Checks every `every_calls` train-step calls (a host transfer costs a sync) and at
    every evaluation. Raises Diverged with the reason recorded in the results.
    """

    def __init__(self, every_steps: int, last_step: int, every_calls: int = CHECK_EVERY):
        super().__init__(every_steps, last_step)
        self.every_calls = every_calls
        self.collapse_run = 0

    def __call__(self, step: int, context: Context) -> None:
        if context.clock.calls % self.every_calls == 0 or self.due(step):
            context.host_metrics = self.check(step, context.metrics)

    def check(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        host = to_host(metrics)
        if not host.pop("finite"):
            bad = sorted(k for k, v in host.items() if not math.isfinite(v))
            raise Diverged(f"non-finite {', '.join(bad)} at step {step}")
        collapsed = host["d_loss"] < COLLAPSE_D_LOSS and max(host["d_grad_norm"], host["g_grad_norm"]) > COLLAPSE_GRAD_NORM
        self.collapse_run = self.collapse_run + 1 if collapsed else 0
        if self.collapse_run >= COLLAPSE_CHECKS:
            raise Diverged(
                f"discriminator loss collapsed below {COLLAPSE_D_LOSS:g} with gradient norm above "
                f"{COLLAPSE_GRAD_NORM:g} for {COLLAPSE_CHECKS * CHECK_EVERY} updates, at step {step}"
            )
        return host


class Evaluate(PeriodicAction):
    """The evaluator's metrics of G's samples and the sample grid's images.

    A class-conditional G is asked for the evaluation split's own class mix (the evaluator
    adds its conditional scores) and draws the grid for `grid_labels`; an unconditional G,
    and InfoGAN (its codes are drawn at random), gets no labels.
    """

    def __init__(self, every_steps: int, last_step: int, evaluator, program, grid_size: int,
                 grid_labels: np.ndarray | None):
        super().__init__(every_steps, last_step)
        self.evaluator = evaluator
        self.program = program
        self.grid_size = grid_size
        self.grid_labels = grid_labels

    def __call__(self, step: int, context: Context) -> None:
        if not self.due(step):
            return
        context.clock.start_eval(context.state)
        generator, sample, evaluator = context.state.generator, self.program.sample, self.evaluator
        if self.grid_labels is not None:
            labels = np.asarray(evaluator.requested_labels(), np.int32)
            context.results = evaluator.evaluate(
                lambda index, size: sample(generator, index, size, labels=evaluator.batch_labels(labels, index)),
                sample_labels=labels)
            context.grid = np.asarray(sample(generator, 0, self.grid_size, labels=self.grid_labels))
        else:
            context.results = evaluator.evaluate(lambda index, size: sample(generator, index, size))
            context.grid = np.asarray(sample(generator, 0, self.grid_size))


class WriteSamples(PeriodicAction):
    """The evaluation's sample grid, as `samples_step<step>.png` and `samples.png`."""

    def __init__(self, every_steps: int, last_step: int, location, write_grid: Callable, data_range):
        super().__init__(every_steps, last_step)
        self.location = location
        self.write_grid = write_grid
        self.data_range = tuple(data_range)

    def __call__(self, step: int, context: Context) -> None:
        if self.due(step):
            self.write_grid(context.grid, self.data_range, self.location / f"samples_step{step:08d}.png")
            self.write_grid(context.grid, self.data_range, self.location / "samples.png")


class BuildRow(PeriodicAction):
    """The evaluation's results row: the metrics, the evaluator's protocol (read at each
    evaluation: a conditional one adds its references at the first), the latest checked
    losses, the timing fields (the evaluation's clock stops here) and its score."""

    def __init__(self, every_steps: int, last_step: int, evaluator):
        super().__init__(every_steps, last_step)
        self.evaluator = evaluator

    def __call__(self, step: int, context: Context) -> None:
        if not self.due(step):
            return
        row = {
            **{k: float(v) for k, v in context.results.items()},
            **self.evaluator.protocol,
            "d_loss": context.host_metrics["d_loss"],
            "g_loss": context.host_metrics["g_loss"],
            **context.clock.stop_eval(),
            "diverged": False,
            "status": "running",
            "error": "",
        }
        row["score"] = score_of(row)
        context.row = row


class WriteRow(PeriodicAction):
    """The evaluation's results row, into the trial's rows (study.storage.store.TrialRows)."""

    def __init__(self, every_steps: int, last_step: int, rows):
        super().__init__(every_steps, last_step)
        self.rows = rows

    def __call__(self, step: int, context: Context) -> None:
        if self.due(step):
            self.rows.add(step, context.row)


class SaveCheckpoint(PeriodicAction):
    """The train state at an evaluation (after its row), with the clock's times, then the
    storage budget: the latest and the best-scoring checkpoints stay while the trial runs."""

    def __init__(self, every_steps: int, last_step: int, checkpoints, rows):
        super().__init__(every_steps, last_step)
        self.checkpoints = checkpoints
        self.rows = rows

    def __call__(self, step: int, context: Context) -> None:
        if self.due(step):
            meta = {"device_seconds": context.clock.device_seconds, "wall_time_s": context.row["wall_time_s"]}
            self.checkpoints.save(step, context.state, meta)
            self.checkpoints.prune({s: r.get("score", float("nan")) for s, r in self.rows.rows.items()},
                                   finished=False)


class ProgressLine(PeriodicAction):
    """One plain line per evaluation: step, score, losses, throughput."""

    def __init__(self, every_steps: int, last_step: int, trial_id: str, log: Callable[[str], None]):
        super().__init__(every_steps, last_step)
        self.trial_id = trial_id
        self.log = log

    def __call__(self, step: int, context: Context) -> None:
        if self.due(step):
            row = context.row
            self.log(f"[{self.trial_id}] step {step}/{self.last_step} score {row['score']:.3f} "
                     f"d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f} {row['images_per_s']:.0f} img/s")


class ReportRow(PeriodicAction):
    """The stored row with the trial's best score so far, to `on_eval` (Ray Tune's report;
    None: nothing to do)."""

    def __init__(self, every_steps: int, last_step: int, rows, on_eval: Callable[[dict[str, Any]], None] | None):
        super().__init__(every_steps, last_step)
        self.rows = rows
        self.on_eval = on_eval

    def __call__(self, step: int, context: Context) -> None:
        if self.on_eval is not None and self.due(step):
            self.on_eval({**self.rows.rows[step], "best_score": self.rows.best})
