"""`python -m study.trial`: one trial in-process, without Ray, for debugging a configuration.

    python -m study.trial loss=ns scale=tiny train_steps=200 out=/tmp/t1

Progress goes to stderr; the last stdout line is one JSON object with the final metrics.
Run it again with the same `out=` after a kill and it resumes from the latest checkpoint.
The Ray trainable (study.sweep.tune) calls the same `run_trial`.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from typing import Any

import numpy as np

from study.runtime import configure_jax
from study.storage.paths import check_output_dir
from study.trial.config import ConfigError, TrialConfig, parse_assignments
from study.trial.loop import TrialFolderMismatch, run_trial


def parse_overrides(pairs: list[str]) -> tuple[dict[str, str], str | None]:
    """(field values, out) of `KEY=VALUE` arguments.

    A key given twice is refused (study.trial.config.parse_assignments), and `out=` must
    name a folder that can be written: one-line ConfigErrors, before any work. Unknown
    field names are left to TrialConfig.from_dict.
    """
    values = parse_assignments(pairs, flag="argument", check=_check_out)
    return values, values.pop("out", None)


def _check_out(key: str, value: str) -> None:
    if key == "out":
        try:
            check_output_dir(value, "out=")
        except ValueError as error:
            raise ConfigError(str(error)) from None


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

    configure_jax()
    out_dir = pathlib.Path(out or f"studies/trials/{config.trial_id}")
    try:
        final = run_trial(config, out_dir, identity={"study": "trial", "search": "explicit", "round": 0})
    except TrialFolderMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    summary = {k: final.get(k) for k in ("trial_id", "step", "status", "diverged", "error", "score", "best_score",
                                         "fid", "fid_domain", "kid", "kid_domain", "is", "is_domain",
                                         "d_loss", "g_loss", "images_per_s", "device_seconds")}
    summary["out"] = str(out_dir)
    print(json.dumps({k: _json_value(v) for k, v in summary.items()}, allow_nan=False))
    return 0


def _json_value(value: Any) -> Any:
    """A summary value as strict JSON: a missing or non-finite number (None in a fresh run's
    row, NaN once the row went through parquet on resume) is null, numpy scalars are plain
    Python, anything else unknown is its str."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
