"""The trial loop's side effects as small periodic actions (the shape of clu.periodic_actions).

`study.trial.loop.run_trial` is a short loop: one train step, then the actions. Each action
decides from the step whether it is due, does one thing, and writes only through the
trial's storage (study.storage.location), so each is testable alone:

    DivergenceCheck   every CHECK_EVERY train-step calls and at every evaluation: ends
                      the trial (Diverged) on non-finite values or a collapsed D
    WriteSamples      at every evaluation: the 8x8 sample grid, per step and latest
    WriteRow          at every evaluation: the results row (study.storage.store.TrialRows)
    SaveCheckpoint    at every evaluation, after the row: state + verified digest,
                      then the storage budget (latest and best kept)
    ProgressLine      at every evaluation: one plain progress line

Order at an evaluation is rows, then checkpoint: a kill in between re-evaluates that
step on resume and replaces the row with an identical one (bit-identical resume).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

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


class PeriodicAction:
    """Due every `every_steps` steps and at `last_step` (clu's PeriodicAction, by step)."""

    def __init__(self, every_steps: int, last_step: int):
        self.every_steps = int(every_steps)
        self.last_step = int(last_step)

    def due(self, step: int) -> bool:
        return step % self.every_steps == 0 or step >= self.last_step


class DivergenceCheck:
    """Host-side divergence rules; `__call__` returns the host metrics when it checked.

    Checks every CHECK_EVERY train-step calls (a host transfer costs a sync) and at
    every evaluation. Raises Diverged with the reason recorded in the results.
    """

    def __init__(self, every_calls: int = CHECK_EVERY):
        self.every_calls = every_calls
        self.collapse_run = 0

    def __call__(self, step: int, calls: int, metrics: Mapping[str, Any], at_eval: bool) -> dict[str, float] | None:
        if not (calls % self.every_calls == 0 or at_eval):
            return None
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


class WriteSamples(PeriodicAction):
    """The evaluation's sample grid, as `samples_step<step>.png` and `samples.png`."""

    def __init__(self, every_steps: int, last_step: int, location, write_grid: Callable, data_range):
        super().__init__(every_steps, last_step)
        self.location = location
        self.write_grid = write_grid
        self.data_range = tuple(data_range)

    def __call__(self, step: int, grid: np.ndarray) -> None:
        if self.due(step):
            self.write_grid(grid, self.data_range, self.location / f"samples_step{step:08d}.png")
            self.write_grid(grid, self.data_range, self.location / "samples.png")


class WriteRow(PeriodicAction):
    """The evaluation's results row, into the trial's rows (study.storage.store.TrialRows)."""

    def __init__(self, every_steps: int, last_step: int, rows):
        super().__init__(every_steps, last_step)
        self.rows = rows

    def __call__(self, step: int, row: Mapping[str, Any]) -> None:
        if self.due(step):
            self.rows.add(step, row)


class SaveCheckpoint(PeriodicAction):
    """The train state at an evaluation (after its row), then the storage budget:
    the latest and the best-scoring checkpoints stay while the trial runs."""

    def __init__(self, every_steps: int, last_step: int, checkpoints, rows):
        super().__init__(every_steps, last_step)
        self.checkpoints = checkpoints
        self.rows = rows

    def __call__(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        if self.due(step):
            self.checkpoints.save(step, state, dict(meta))
            self.checkpoints.prune({s: r.get("score", float("nan")) for s, r in self.rows.rows.items()},
                                   finished=False)


class ProgressLine(PeriodicAction):
    """One plain line per evaluation: step, score, losses, throughput."""

    def __init__(self, every_steps: int, last_step: int, trial_id: str, log: Callable[[str], None]):
        super().__init__(every_steps, last_step)
        self.trial_id = trial_id
        self.log = log

    def __call__(self, step: int, row: Mapping[str, Any]) -> None:
        if self.due(step):
            self.log(f"[{self.trial_id}] step {step}/{self.last_step} score {row['score']:.3f} "
                     f"d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f} {row['images_per_s']:.0f} img/s")
