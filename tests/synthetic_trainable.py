"""Test helpers of the Bayesian searcher (study.sweep.bayes): a cheap stand-in for FID with
a known optimum, and a Ray trainable that trains nothing and scores trials by it.

Ray workers unpickle the trainable, and they cannot import this module (tests/ is on the
test process's path only), so the module is pickled by value: its functions travel with
the experiment; what they use from the study package is imported by name on the worker.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Mapping

from study.storage import store
from study.storage.location import at
from study.sweep.tune import _arm, _report_metrics  # first: it sets Ray's driver settings before ray is imported
from study.trial.config import TrialConfig

import ray.cloudpickle

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SYNTHETIC_OPTIMUM = {"learning_rate": 10 ** -3.5, "beta1": 0.3, "beta2": 0.9, "discriminator_steps": 5,
                     "penalty_weight": 10.0}


def synthetic_objective(params: Mapping[str, Any]) -> float:
    """A cheap stand-in for FID with a known minimum 10.0 at SYNTHETIC_OPTIMUM: a smooth
    bowl in (log10 lr, beta1, beta2, log10 lambda) plus a cost for n_dis = 1. Arms without
    a weighted penalty (lambda = 0) ignore the lambda term."""
    value = 10.0 + 8.0 * (math.log10(params["learning_rate"]) + 3.5) ** 2
    value += 20.0 * (params["beta1"] - 0.3) ** 2 + 20.0 * (params["beta2"] - 0.9) ** 2
    value += 0.0 if int(params["discriminator_steps"]) == 5 else 3.0
    if params.get("penalty_weight", 0.0) > 0:
        value += 4.0 * (math.log10(params["penalty_weight"]) - 1.0) ** 2
    return value


def synthetic_trainable(params: dict[str, Any]) -> None:
    """A Ray trainable with `study.sweep.tune.trainable`'s contract that trains nothing: it writes
    the trial's rows (two evaluations scored by `synthetic_objective`, the second worse)
    and reports them. `learning_rate` >= 9e-3 "diverges" with no finite score, to exercise
    the penalty path."""
    from ray import tune as ray_tune

    study_dir = at(params["study_dir"])
    identity = dict(params.get("identity", {}))
    for trial in params["trials"]:
        config = TrialConfig.from_dict(trial)
        rows = store.TrialRows(study_dir / store.TRIALS_DIR / config.trial_id,
                               {**identity, "arm": _arm(trial)}, config)
        if config.learning_rate >= 9e-3:
            rows.mark_final("diverged", error="synthetic divergence", diverged=True, step=1)
        else:
            value = synthetic_objective(config.to_dict())
            for step, score in ((1, value), (2, value + 1.0)):
                rows.add(step, {"score": score, "status": "running", "diverged": False, "error": ""})
            rows.mark_final("completed")
        final = rows.rows[max(rows.rows)]
        ray_tune.report(_report_metrics({**final, "best_score": rows.best}))
