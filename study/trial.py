"""One trial: train, evaluate periodically, checkpoint, resume; and its debug CLI.

    python -m study.trial loss=ns scale=tiny train_steps=200 out=/tmp/t1

runs one trial in-process without Ray: progress on stderr; the last stdout line is one
JSON object with the final metrics. Run it again with the same `out=` after a kill and
it resumes from the latest checkpoint. The Ray trainable (study.tune) calls the same
`run_trial`.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np

from study.config import ConfigError, TrialConfig

# Divergence: losses or gradients that stop being finite end a trial at once; a
# discriminator whose loss collapses to ~0 while a gradient norm explodes, for
# COLLAPSE_CHECKS consecutive checks (CHECK_EVERY updates apart), ends it too.
CHECK_EVERY = 10  # train-step calls between host-side divergence checks
COLLAPSE_D_LOSS = 1e-3
COLLAPSE_GRAD_NORM = 1e3
COLLAPSE_CHECKS = 5

SAMPLE_GRID = 8  # an 8x8 grid of evaluation samples per evaluation


class Diverged(Exception):
    """Training diverged; the message is the reason recorded in the results."""


def score_of(metrics: Mapping[str, float]) -> float:
    """A trial's objective at one evaluation: Inception FID when available, else the domain FID."""
    for name in ("fid", "fid_domain"):
        value = metrics.get(name)
        if value is not None and math.isfinite(value):
            return float(value)
    return float("nan")


def _to_host(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


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


def run_trial(
    config: TrialConfig,
    out_dir: pathlib.Path | str,
    *,
    identity: Mapping[str, Any] | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Trains and evaluates one configuration; resumes from `out_dir`'s latest checkpoint.

    Writes `out_dir/rows.parquet` (one row per evaluation, see study.store), sample grids,
    and orbax checkpoints under `out_dir/checkpoints` (at every evaluation). Returns the
    final row. A diverged trial returns normally with status "diverged"; other errors
    are recorded as status "failed" with their reason and re-raised.
    """
    import jax

    from study import data, store
    from study import train as training
    from study.checkpoint import Checkpoints
    from study.data.pipeline import BatchStream, Prefetcher
    from study.metrics import Evaluator

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(config.to_dict(), out_dir / "config.json")
    rows = store.TrialRows(out_dir, identity or {}, config)
    started = time.perf_counter()
    step = 0
    batches = None
    try:
        program = training.get_program(config)
        init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
        state = training.init_state(program, config, init_key)
        checkpoints = Checkpoints(out_dir / "checkpoints")
        restored = checkpoints.restore_latest(state)
        meta: dict[str, Any] = {"device_seconds": 0.0, "wall_time_s": 0.0}
        if restored is not None:
            state, meta = restored
            log(f"[{config.trial_id}] resuming from step {int(state.step)} (checkpoint in {checkpoints.directory})")
        step = int(state.step)
        device_seconds = float(meta["device_seconds"])
        wall_offset = float(meta["wall_time_s"])

        gan = program.gan
        images = data.load(config.dataset, "train", config.image_size)
        stream = BatchStream(images, config.batch_size, config.seed, start_batch=step)
        evaluator = Evaluator(
            dataset=config.dataset, split=config.fid_split, image_size=config.image_size,
            num_samples=config.eval_samples, data_range=tuple(gan.data_range),
        )
        n_dis = config.discriminator_steps
        collapse_run = 0
        last_metrics: dict[str, float] = {}
        span_start = time.perf_counter()
        calls = 0
        compile_seconds = None
        # The next groups of real batches are gathered and put on the device on a
        # background thread while the current step runs; the order is the stream's.
        batches = Prefetcher(stream, n_dis, depth=2)
        while step < config.train_steps:
            real = batches.next()
            if n_dis < program.batch_slots:
                real = training.pad_batches(real, program.batch_slots)
            state, metrics = program.train_step(state, real, train_key)
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
            at_eval = step % config.eval_every == 0 or step >= config.train_steps
            if calls % CHECK_EVERY == 0 or at_eval:
                last_metrics = _to_host(metrics)
                if not last_metrics.pop("finite"):
                    bad = sorted(k for k, v in last_metrics.items() if not math.isfinite(v))
                    raise Diverged(f"non-finite {', '.join(bad)} at step {step}")
                collapsed = last_metrics["d_loss"] < COLLAPSE_D_LOSS and max(
                    last_metrics["d_grad_norm"], last_metrics["g_grad_norm"]) > COLLAPSE_GRAD_NORM
                collapse_run = collapse_run + 1 if collapsed else 0
                if collapse_run >= COLLAPSE_CHECKS:
                    raise Diverged(
                        f"discriminator loss collapsed below {COLLAPSE_D_LOSS:g} with gradient norm above "
                        f"{COLLAPSE_GRAD_NORM:g} for {COLLAPSE_CHECKS * CHECK_EVERY} updates, at step {step}"
                    )
            if not at_eval:
                continue
            jax.block_until_ready(state)
            eval_start = time.perf_counter()
            train_seconds = eval_start - span_start
            generator_vars = state.generator
            results = evaluator.evaluate(lambda index, size: program.sample(generator_vars, index, size))
            grid = np.asarray(program.sample(generator_vars, 0, min(SAMPLE_GRID * SAMPLE_GRID, config.eval_samples)))
            save_grid(grid, tuple(gan.data_range), out_dir / f"samples_step{step:08d}.png")
            save_grid(grid, tuple(gan.data_range), out_dir / "samples.png")
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
            rows.add(step, row)
            checkpoints.save(step, state, {"device_seconds": device_seconds, "wall_time_s": row["wall_time_s"]})
            log(f"[{config.trial_id}] step {step}/{config.train_steps} score {row['score']:.3f} "
                f"d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f} {row['images_per_s']:.0f} img/s")
            if on_eval is not None:
                on_eval({**rows.rows[step], "best_score": rows.best})
            span_start = time.perf_counter()
            calls = 0
        checkpoints.close()
        rows.mark_final("completed")
    except Diverged as reason:
        log(f"[{config.trial_id}] diverged: {reason}")
        rows.mark_final("diverged", error=str(reason), diverged=True, step=step,
                        extra={**last_metrics, "diverged": True})
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
    return {**rows.rows[max(rows.rows)], "best_score": rows.best}


def parse_overrides(pairs: list[str]) -> tuple[dict[str, str], str | None]:
    """(field values, out) of `KEY=VALUE` arguments.

    A key given twice is refused (last-wins would silently drop the first value), and
    `out=` must name a folder that can be written: one-line ConfigErrors, before any work.
    """
    from study.paths import check_output_dir

    values: dict[str, str] = {}
    out = None
    seen: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"argument {pair!r} is not KEY=VALUE; fields: {', '.join(TrialConfig.field_names())}")
        key, value = pair.split("=", 1)
        if key in seen:
            raise ConfigError(f"{key} is given twice ({key}={seen[key]!r} and {key}={value!r}); give it once")
        seen[key] = value
        if key == "out":
            try:
                check_output_dir(value, "out=")
            except ValueError as error:
                raise ConfigError(str(error)) from None
            out = value
        else:
            values[key] = value
    return values, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.trial",
        description="Run one trial in-process (no Ray) for debugging a configuration. Arguments are "
                    "TrialConfig fields as KEY=VALUE, plus out=DIR (default: a new folder under studies/trials/). "
                    "Progress goes to stderr; the last stdout line is a JSON object with the final metrics.",
        epilog="fields: " + ", ".join(TrialConfig.field_names()),
    )
    parser.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        values, out = parse_overrides(args.assignments)
        config = TrialConfig.from_dict(values, coerce_strings=True)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from study.runtime import configure_jax

    configure_jax()
    out_dir = pathlib.Path(out or f"studies/trials/{config.trial_id}")
    try:
        final = run_trial(config, out_dir, identity={"study": "trial", "search": "explicit", "round": 0})
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    summary = {k: final.get(k) for k in ("trial_id", "step", "status", "diverged", "error", "score", "best_score",
                                         "fid", "fid_domain", "kid", "kid_domain", "is", "is_domain",
                                         "d_loss", "g_loss", "images_per_s", "device_seconds")}
    summary["out"] = str(out_dir)
    print(json.dumps(summary, default=_json_default))
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
