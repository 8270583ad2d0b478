"""One trial: train, evaluate periodically, checkpoint, resume; and its debug CLI.

    python -m study.trial loss=ns scale=tiny train_steps=200 out=/tmp/t1

runs one trial in-process without Ray: progress on stderr; the last stdout line is one
JSON object with the final metrics. Run it again with the same `out=` after a kill and
it resumes from the latest checkpoint. The Ray trainable (study.sweep.tune) calls the same
`run_trial`.
"""
from __future__ import annotations

import math
import pathlib
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np

from study import data
from study.data.pipeline import BatchStream, Prefetcher
from study.metrics import Evaluator
from study.storage import store
from study.storage.location import Location, at
from study.trial import train as training
from study.trial.checkpoint import Checkpoints
from study.trial.config import ConfigError, TrialConfig
from study.trial.hooks import Diverged, DivergenceCheck, ProgressLine, SaveCheckpoint, WriteRow, WriteSamples

SAMPLE_GRID = 8  # an 8x8 grid of evaluation samples per evaluation


def score_of(metrics: Mapping[str, float]) -> float:
    """A trial's objective at one evaluation: Inception FID when available, else the domain FID."""
    for name in ("fid", "fid_domain"):
        value = metrics.get(name)
        if value is not None and math.isfinite(value):
            return float(value)
    return float("nan")


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
    import jax


    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    location = at(out_dir)
    if location.is_local:
        location.mkdir()
    check_folder_config(config, location)
    (location / store.CONFIG_FILE).write_json(config.to_dict())
    rows = store.TrialRows(location, identity or {}, config)
    started = time.perf_counter()
    step = 0
    batches = None
    checkpoints = None
    try:
        program = training.get_program(config)
        init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
        state = training.init_state(program, config, init_key)
        checkpoints = Checkpoints(location / "checkpoints", keep=keep_checkpoints)
        if rows.damaged:
            # Rows before the checkpoint are lost: resuming would leave them missing.
            checkpoints.discard_all()
        restored = checkpoints.restore_latest(state)
        meta: dict[str, Any] = {"device_seconds": 0.0, "wall_time_s": 0.0}
        if restored is not None:
            state, meta = restored
            log(f"[{config.trial_id}] resuming from step {int(state.step)} (checkpoint in {checkpoints.location})")
        step = int(state.step)
        device_seconds = float(meta["device_seconds"])
        wall_offset = float(meta["wall_time_s"])

        gan = program.gan
        images = data.load(config.dataset, "train", config.image_size)
        labelled = program.labelled  # a class-conditional program trains on the real batches' labels
        stream = BatchStream(images, config.batch_size, config.seed, start_batch=step,
                             labels=data.labels(config.dataset, "train") if labelled else None)
        evaluator = Evaluator(
            dataset=config.dataset, split=config.fid_split, image_size=config.image_size,
            num_samples=config.eval_samples, data_range=tuple(gan.data_range),
        )
        n_dis = config.discriminator_steps
        last_metrics: dict[str, float] = {}
        span_start = time.perf_counter()
        calls = 0
        compile_seconds = None
        # The loop's side effects, each a small periodic action (study.trial.hooks).
        every, last = config.eval_every, config.train_steps
        divergence = DivergenceCheck()
        hooks_rows = WriteRow(every, last, rows)
        hooks_samples = WriteSamples(every, last, location, _write_grid, gan.data_range)
        hooks_checkpoint = SaveCheckpoint(every, last, checkpoints, rows)
        hooks_progress = ProgressLine(every, last, config.trial_id, log)
        # The next groups of real batches are gathered and put on the device on a
        # background thread while the current step runs; the order is the stream's.
        batches = Prefetcher(stream, n_dis, depth=2)
        while step < config.train_steps:
            real = batches.next()
            if labelled:
                real, real_labels = real
                if n_dis < program.batch_slots:
                    real_labels = training.pad_batches(real_labels, program.batch_slots)
            if n_dis < program.batch_slots:
                real = training.pad_batches(real, program.batch_slots)
            state, metrics = training.run_group(program, state, real, train_key, n_dis,
                                                real_labels if labelled else None)
            step += n_dis
            if compile_seconds is None:
                # The first call compiles (or loads from the persistent cache): account
                # it apart so images/s measures training throughput.
                jax.block_until_ready(state)
                compile_seconds = time.perf_counter() - span_start
                device_seconds += compile_seconds
                span_start = time.perf_counter()
            else:
                calls += 1
            at_eval = hooks_rows.due(step)
            last_metrics = divergence(step, calls, metrics, at_eval) or last_metrics
            if not at_eval:
                continue
            jax.block_until_ready(state)
            eval_start = time.perf_counter()
            train_seconds = eval_start - span_start
            generator_vars = state.generator
            if labelled:
                # The evaluation split's own class mix; the evaluator adds its conditional scores.
                sample_labels = np.asarray(evaluator.requested_labels(), np.int32)
                results = evaluator.evaluate(
                    lambda index, size: program.sample(generator_vars, index, size,
                                                       labels=evaluator.batch_labels(sample_labels, index)),
                    sample_labels=sample_labels)
            else:  # unconditional, and InfoGAN (its codes are drawn at random)
                results = evaluator.evaluate(lambda index, size: program.sample(generator_vars, index, size))
            grid_size = min(SAMPLE_GRID * SAMPLE_GRID, config.eval_samples)
            grid = np.asarray(program.sample(generator_vars, 0, grid_size,
                                             **({"labels": grid_labels(grid_size, data.info(config.dataset).num_classes)}
                                                if labelled else {})))
            hooks_samples(step, grid)
            now = time.perf_counter()
            device_seconds += now - span_start
            row = {
                **{k: float(v) for k, v in results.items()},
                **evaluator.protocol,
                "d_loss": last_metrics["d_loss"],
                "g_loss": last_metrics["g_loss"],
                "wall_time_s": wall_offset + now - started,
                "device_seconds": device_seconds,
                "images_per_s": calls * n_dis * config.batch_size / train_seconds if calls else float("nan"),
                "compile_seconds": compile_seconds,
                "eval_seconds": now - eval_start,
                "diverged": False,
                "status": "running",
                "error": "",
            }
            row["score"] = score_of(row)
            # Rows first, then the checkpoint: a kill in between re-evaluates this step on
            # resume and replaces the row with an identical one.
            hooks_rows(step, row)
            hooks_checkpoint(step, state, {"device_seconds": device_seconds, "wall_time_s": row["wall_time_s"]})
            hooks_progress(step, row)
            if on_eval is not None:
                on_eval({**rows.rows[step], "best_score": rows.best})
            span_start = time.perf_counter()
            calls = 0
        rows.mark_final("completed")
        checkpoints.prune({}, finished=True)
    except Diverged as reason:
        log(f"[{config.trial_id}] diverged: {reason}")
        rows.mark_final("diverged", error=str(reason), diverged=True, step=step,
                        extra={**last_metrics, "diverged": True})
        checkpoints.prune({}, finished=True)
        final = {**rows.rows[max(rows.rows)], "best_score": rows.best}
        if on_eval is not None:
            on_eval(final)
        return final
    except BaseException as error:
        reason = f"{type(error).__name__}: {error}"
        rows.mark_final("failed", error=reason[:2000], step=step)
        raise
    finally:
        if batches is not None:
            batches.close()
        if checkpoints is not None:
            checkpoints.close()
    return {**rows.rows[max(rows.rows)], "best_score": rows.best}
