"""One trial: train, evaluate periodically, checkpoint, resume (`run_trial`).

`python -m study.trial loss=ns scale=tiny train_steps=200 out=/tmp/t1` (study.trial.cli) runs
one trial in-process without Ray; run it again with the same `out=` after a kill and it
resumes from the latest checkpoint. The Ray trainable (study.sweep.tune) calls the same
`run_trial`. The loop trains one group of D updates (and its G update) at a time and then
calls the periodic actions of study.trial.hooks, which decide themselves when they are due.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
from typing import Any, Callable, Mapping

import jax
import numpy as np

from study import data
from study.data.pipeline import BatchStream, Prefetcher
from study.metrics import Evaluator
from study.storage import store
from study.storage.location import Location, at
from study.trial import train as training
from study.trial.checkpoint import Checkpoints
from study.trial.config import ConfigError, TrialConfig
from study.trial.hooks import (BuildRow, Context, Diverged, DivergenceCheck, Evaluate, ProgressLine, ReportRow,
                               SaveCheckpoint, Timing, WriteRow, WriteSamples)

SAMPLE_GRID = 8  # an 8x8 grid of evaluation samples per evaluation


def save_grid(images: np.ndarray, data_range: tuple[float, float], path: pathlib.Path) -> None:
    """images [n, H, W, C] in data_range -> a PNG grid (up to SAMPLE_GRID x SAMPLE_GRID)."""
    from PIL import Image

    low, high = data_range
    images = np.clip((np.asarray(images, np.float32) - low) / (high - low), 0.0, 1.0)
    n = min(len(images), SAMPLE_GRID * SAMPLE_GRID)
    cols = min(SAMPLE_GRID, n)
    rows = math.ceil(n / cols)
    h, w, c = images.shape[1:]
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = images[i]
    pixels = np.rint(grid * 255).astype(np.uint8)
    scale = max(1, 128 // h)  # tiny images are enlarged so a person can see them
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    image.save(tmp)
    tmp.replace(path)


def grid_labels(count: int, num_classes: int) -> np.ndarray:
    """Classes of a conditional sample grid: row r of the SAMPLE_GRID-wide grid is class r mod K,
    so a person sees each class along a row."""
    return ((np.arange(count) // SAMPLE_GRID) % num_classes).astype(np.int32)


class TrialFolderMismatch(ConfigError):
    """A trial folder that already holds another configuration (one line, names the fields)."""


def check_folder_config(config: TrialConfig, trial_dir: "Location") -> None:
    """Refuses a trial folder whose recorded config.json differs from `config`: resuming
    there would continue another configuration's checkpoint and mix its rows."""

    recorded_at = trial_dir / store.CONFIG_FILE
    if not recorded_at.exists():
        return
    try:
        recorded = recorded_at.read_json()
    except Exception as error:  # unreadable: the folder's rows and checkpoints decide alone
        print(f"warning: {recorded_at} is unreadable ({type(error).__name__}); rewriting it", file=sys.stderr)
        return
    current = config.to_dict()
    differing = sorted(k for k in set(recorded) | set(current) if recorded.get(k, None) != current.get(k, None))
    if differing:
        shown = ", ".join(f"{k}={recorded.get(k)!r} there, {current.get(k)!r} now" for k in differing[:4])
        more = f" (+{len(differing) - 4} more)" if len(differing) > 4 else ""
        raise TrialFolderMismatch(f"out={trial_dir} holds another configuration ({shown}{more}); "
                                  f"use another out= or delete that folder")


def _write_grid(images: np.ndarray, data_range: tuple[float, float], location: "Location") -> None:
    """save_grid through the trial's storage (a local file, or a scratch file uploaded)."""
    import tempfile

    if location.is_local:
        save_grid(images, data_range, location.local_path)
        return
    with tempfile.TemporaryDirectory(prefix="gan-study-grid-") as scratch:
        path = pathlib.Path(scratch) / location.name
        save_grid(images, data_range, path)
        location.write_bytes(path.read_bytes())


@dataclasses.dataclass
class _Trial:
    """One run of a trial: its folder and rows, what setup builds, and the loop's position."""

    config: TrialConfig
    location: Location
    rows: store.TrialRows
    log: Callable[[str], None]
    context: Context
    step: int = 0  # D updates done, counted from the trial's start (resumed runs included)
    checkpoints: Checkpoints | None = None
    batches: Prefetcher | None = None
    program: Any = None
    train_key: Any = None
    actions: list[Callable[[int, Context], None]] = dataclasses.field(default_factory=list)

    def final(self) -> dict[str, Any]:
        """The latest row with the best score so far (what run_trial returns)."""
        return {**self.rows.rows[max(self.rows.rows)], "best_score": self.rows.best}

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        if self.checkpoints is not None:
            self.checkpoints.close()


def _open(config: TrialConfig, out_dir, identity: Mapping[str, Any] | None, log: Callable[[str], None]) -> _Trial:
    """The trial folder (refused when it holds another configuration), its config.json and
    its rows; the trial's clock starts here."""
    location = at(out_dir)
    if location.is_local:
        location.mkdir()
    check_folder_config(config, location)
    (location / store.CONFIG_FILE).write_json(config.to_dict())
    rows = store.TrialRows(location, identity or {}, config)
    clock = Timing(config.eval_every, config.train_steps, config.discriminator_steps * config.batch_size)
    return _Trial(config, location, rows, log, Context(clock))


def _restore(trial: _Trial, keep_checkpoints: str) -> None:
    """The program and its train state: fresh from the seed, or the latest verified
    checkpoint's, with the times it recorded."""
    config = trial.config
    trial.program = training.get_program(config)
    init_key, trial.train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    state = training.init_state(trial.program, config, init_key)
    trial.checkpoints = checkpoints = Checkpoints(trial.location / "checkpoints", keep=keep_checkpoints)
    if trial.rows.damaged:
        # Rows before the checkpoint are lost: resuming would leave them missing.
        checkpoints.discard_all()
    restored = checkpoints.restore_latest(state)
    meta: dict[str, Any] = {"device_seconds": 0.0, "wall_time_s": 0.0}
    if restored is not None:
        state, meta = restored
        trial.log(f"[{config.trial_id}] resuming from step {int(state.step)} (checkpoint in {checkpoints.location})")
    trial.step = int(state.step)
    trial.context.state = state
    trial.context.clock.resume(meta)


def _start(trial: _Trial, on_eval: Callable[[dict[str, Any]], None] | None) -> None:
    """The real batches from the restored step on, the evaluator, and the periodic actions
    in the order of their side effects (study.trial.hooks)."""
    config, program, clock = trial.config, trial.program, trial.context.clock
    labelled = program.labelled  # a class-conditional program trains on the real batches' labels
    stream = BatchStream(data.load(config.dataset, "train", config.image_size), config.batch_size, config.seed,
                         start_batch=trial.step, labels=data.labels(config.dataset, "train") if labelled else None)
    evaluator = Evaluator(
        dataset=config.dataset, split=config.fid_split, image_size=config.image_size,
        num_samples=config.eval_samples, data_range=tuple(program.gan.data_range),
    )
    clock.start_span()
    every, last = config.eval_every, config.train_steps
    grid_size = min(SAMPLE_GRID * SAMPLE_GRID, config.eval_samples)
    labels = grid_labels(grid_size, data.info(config.dataset).num_classes) if labelled else None
    trial.actions = [
        clock.count_group,
        DivergenceCheck(every, last),
        Evaluate(every, last, evaluator, program, grid_size, labels),
        WriteSamples(every, last, trial.location, _write_grid, program.gan.data_range),
        BuildRow(every, last, evaluator),
        # Rows first, then the checkpoint: a kill in between re-evaluates this step on
        # resume and replaces the row with an identical one.
        WriteRow(every, last, trial.rows),
        SaveCheckpoint(every, last, trial.checkpoints, trial.rows),
        ProgressLine(every, last, config.trial_id, trial.log),
        ReportRow(every, last, trial.rows, on_eval),
        clock.next_span,
    ]
    # The next groups of real batches are gathered and put on the device on a
    # background thread while the current step runs; the order is the stream's.
    trial.batches = Prefetcher(stream, config.discriminator_steps, depth=2)


def _train_group(trial: _Trial) -> None:
    """One group: n_dis D updates on the next n_dis real batches, then one G update (the
    paper's n_dis, Kurach et al. 2019; study.trial.train.run_group); the batches are padded
    to the program's slots."""
    program, n_dis = trial.program, trial.config.discriminator_steps
    real, labels = trial.batches.next(), None
    if program.labelled:
        real, labels = real
        if n_dis < program.batch_slots:
            labels = training.pad_batches(labels, program.batch_slots)
    if n_dis < program.batch_slots:
        real = training.pad_batches(real, program.batch_slots)
    context = trial.context
    context.state, context.metrics = training.run_group(program, context.state, real, trial.train_key, n_dis, labels)
    trial.step += n_dis


def _diverged(trial: _Trial, reason: Diverged, on_eval: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """A diverged trial is data: a final row with the reason and the last checked losses."""
    trial.log(f"[{trial.config.trial_id}] diverged: {reason}")
    trial.rows.mark_final("diverged", error=str(reason), diverged=True, step=trial.step,
                          extra={**trial.context.host_metrics, "diverged": True})
    trial.checkpoints.prune({}, finished=True)
    final = trial.final()
    if on_eval is not None:
        on_eval(final)
    return final


def _log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_trial(
    config: TrialConfig,
    out_dir: "pathlib.Path | str | Location",
    *,
    identity: Mapping[str, Any] | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    keep_checkpoints: str = "final",
) -> dict[str, Any]:
    """Trains and evaluates one configuration; resumes from `out_dir`'s latest checkpoint.

    `out_dir` is a local folder or any study storage (s3://..., see study.storage.location): the
    trial writes `rows.parquet` (one row per evaluation, see study.storage.store), sample grids
    and checkpoints (at every evaluation, verified on restore, kept per
    `keep_checkpoints`, see study.trial.checkpoint) there, so a retry on any node resumes.
    Returns the final row. A diverged trial returns normally with status "diverged";
    other errors are recorded as status "failed" with their reason and re-raised. A
    folder holding another configuration is refused (TrialFolderMismatch).
    """
    trial = _open(config, out_dir, identity, log or _log_to_stderr)
    try:
        _restore(trial, keep_checkpoints)
        _start(trial, on_eval)
        while trial.step < config.train_steps:
            _train_group(trial)
            for action in trial.actions:
                action(trial.step, trial.context)
        trial.rows.mark_final("completed")
        trial.checkpoints.prune({}, finished=True)
    except Diverged as reason:
        return _diverged(trial, reason, on_eval)
    except BaseException as error:
        reason = f"{type(error).__name__}: {error}"
        trial.rows.mark_final("failed", error=reason[:2000], step=trial.step)
        raise
    finally:
        trial.close()
    return trial.final()
