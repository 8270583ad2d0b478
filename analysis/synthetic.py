"""Synthetic study directories in the study runner's format, for tests and benchmarks.

`write_synthetic_studies(root, rows, seed)` writes three studies that together exercise
every report section: a grid study (several losses, normalizations, penalties, two
datasets, plus a ResNet ablation), a Bayesian study with rounds, and a rerun study with
several seeds per setting. Some trials diverge, some fail before any evaluation. Scores
follow a simple known model (BN in D hurts, SN and GP help, lr far from 2e-4 hurts), so
a reader of the synthetic report can see whether the plots show what went in.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import pathlib
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from analysis.load import CONFIG_FIELDS
from study.schema import ABLATION_SWITCHES

TABLE1_LR = (2e-4, 1e-4, 1e-3)
TABLE1_LAMBDA = (1.0, 10.0)
TABLE1_BETAS_NDIS = ((0.5, 0.9, 5), (0.5, 0.999, 1), (0.5, 0.999, 5), (0.9, 0.999, 5))
ABLATIONS = ABLATION_SWITCHES  # study 5's networks by name
# The synthetic truth: additive FID offsets per axis value.
_OFFSETS = {
    "normalization": {"spectral": 0.0, "layer": 4.0, "none": 9.0, "batch": 22.0},
    "penalty": {"gp": -4.0, "dragan": -2.0, "none": 0.0, "l2": 1.0},
    "loss": {"ns": 0.0, "ls": 2.0, "wgan": 6.0, "mm": 4.0},
    "dataset": {"cifar10": 8.0, "celebahq128": 0.0},
    "architecture": {"sndcgan": 0.0, "resnet19": -3.0, "resnet_cifar": -2.0},
}
_ABLATION_OFFSETS = {"default": 0.0, "identity": 1.0, "cin": 6.0, "opt": -0.5, "cin_opt": 0.5, "sum": 1.0,
                     "tan": 0.5, "eps": 0.0, "all": 2.0}
_BASE_CONFIG: dict[str, Any] = {
    "dataset": "cifar10", "architecture": "sndcgan", "loss": "ns", "normalization": "spectral", "penalty": "gp",
    "penalty_weight": 10.0, "learning_rate": 2e-4, "beta1": 0.5, "beta2": 0.999, "discriminator_steps": 1,
    "batch_size": 64, "z_dim": 128, "train_steps": 2000, "eval_every": 250, "seed": 0, "scale": "small",
    "image_size": 32, "width_multiplier": 0.5, "eval_samples": 2000, "fid_split": "test",
    "discriminator_learning_rate": None, "adam_epsilon": 1e-8, "adam_form": "tf", "weight_clip": 0.01, "began_gamma": 0.5,
    "began_k_learning_rate": 0.001, "resnet_d_shortcut": "conv", "resnet_d_cin": False, "resnet_d_opt": False,
    "resnet_d_pooling": "mean", "resnet_tanh": False, "generator_bn_epsilon": None,
    "label_smoothing": 0.0, "label_flip_probability": 0.0, "instance_noise_std": 0.0,
    "instance_noise_anneal_steps": None, "latent_distribution": "uniform", "discriminator_optimizer": "adam",
    "discriminator_sgd_momentum": 0.9, "minibatch_stddev_group_size": 0,
    "conditioning": "none", "acgan_class_weight": 1.0, "infogan_categories": 0, "infogan_continuous": 0,
    "infogan_weight": 1.0,
}
_REAL_SAMPLES = {"cifar10": 10000, "celebahq128": 3000}
# Reference points of the synthetic score (real-data floor, uniform noise, mean image): the
# synthetic trials score 20-70, between floor and noise, as trials that learned.
SYNTHETIC_REFERENCES = {"floor": 6.0, "noise": 250.0, "mean_image": 420.0}


def trial_id(config: dict[str, Any]) -> str:
    """Same recipe as TrialConfig.trial_id: sha256 of the sorted-key JSON, 12 hex."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def arm_name(config: dict[str, Any], ablation: str | None = None) -> str:
    name = "/".join(str(config[k]) for k in ("architecture", "loss", "normalization", "penalty", "dataset"))
    return f"{name}/{ablation}" if ablation else name


def _grid_settings(penalty: str) -> list[tuple[float, float, float, float, int]]:
    lambdas = TABLE1_LAMBDA if penalty != "none" else (0.0,)
    return [(lr, lam, b1, b2, nd) for lr, lam, (b1, b2, nd) in itertools.product(TABLE1_LR, lambdas, TABLE1_BETAS_NDIS)]


def _plan(rows: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The trial list (config + search + round + ablation label) sized to about `rows` rows."""
    evals = 3 if rows < 3000 else 8
    n_trials = max(60, rows // evals)
    plan: list[dict[str, Any]] = []

    def add(search: str, config: dict[str, Any], round_: int = 0, ablation: str | None = None) -> None:
        plan.append({"search": search, "round": round_, "ablation": ablation, "config": config})

    grid_arms = [dict(loss=l, normalization=n, penalty=p, dataset=d)
                 for d in ("cifar10", "celebahq128") for l in ("ns", "wgan", "ls")
                 for n in ("none", "batch", "layer", "spectral") for p in ("none", "gp")]
    per_arm = max(3, round(0.70 * n_trials / len(grid_arms)))
    for arm in grid_arms:
        settings = _grid_settings(arm["penalty"])
        chosen = rng.permutation(len(settings))[: min(per_arm, len(settings))]
        for index in sorted(chosen):
            lr, lam, b1, b2, nd = settings[index]
            add("grid", {**_BASE_CONFIG, **arm, "learning_rate": lr, "penalty_weight": lam,
                         "beta1": b1, "beta2": b2, "discriminator_steps": nd})
    ablation_arm = {"architecture": "resnet_cifar", "loss": "ns", "normalization": "spectral", "penalty": "none",
                    "dataset": "cifar10"}
    per_ablation = max(3, min(12, round(0.10 * n_trials / len(ABLATIONS))))
    settings = _grid_settings("none")
    for label, switches in ABLATIONS.items():
        for lr, lam, b1, b2, nd in settings[:per_ablation]:
            add("grid", {**_BASE_CONFIG, **ablation_arm, **switches, "learning_rate": lr, "penalty_weight": lam,
                         "beta1": b1, "beta2": b2, "discriminator_steps": nd}, ablation=label)
    bayes_arms = [{"architecture": "resnet19", "loss": "ns", "normalization": "spectral", "penalty": "gp",
                   "dataset": "celebahq128", "image_size": 128},
                  {"architecture": "resnet19", "loss": "ns", "normalization": "layer", "penalty": "gp",
                   "dataset": "celebahq128", "image_size": 128}]
    per_round = max(2, min(10, round(0.15 * n_trials / (2 * 12))))
    rounds = 12 if n_trials >= 400 else 4
    for arm in bayes_arms:
        for round_ in range(rounds):
            for _ in range(per_round):
                # later rounds concentrate near the optimum, as a GP-UCB search would
                spread = 1.5 * (1.0 - round_ / rounds) + 0.2
                lr = float(10 ** np.clip(np.log10(2e-4) + rng.normal(0, spread), -5, -2))
                lam = float(10 ** np.clip(1 + rng.normal(0, spread), -1, 2))
                add("bayesian", {**_BASE_CONFIG, **arm, "learning_rate": lr, "penalty_weight": lam,
                                 "beta1": float(rng.uniform(0, 1)), "beta2": float(rng.uniform(0.5, 1)),
                                 "discriminator_steps": int(rng.choice([1, 5]))}, round_=round_)
    rerun_settings = [(2e-4, 10.0, 0.5, 0.999, 1), (1e-4, 10.0, 0.5, 0.9, 5), (1e-3, 1.0, 0.5, 0.999, 5)]
    seeds = max(3, min(10, round(0.05 * n_trials / len(rerun_settings))))
    for lr, lam, b1, b2, nd in rerun_settings:
        for seed in range(seeds):
            add("rerun", {**_BASE_CONFIG, "learning_rate": lr, "penalty_weight": lam, "beta1": b1, "beta2": b2,
                          "discriminator_steps": nd, "seed": seed})
    # ~5% of rows are lost to early divergence and failures; aim a little above `rows`
    evals = max(2, math.ceil(rows / len(plan) / 0.95))
    for item in plan:
        item["config"]["train_steps"] = 250 * evals
    return plan


def _true_score(config: dict[str, Any], ablation: str | None) -> float:
    score = 25.0
    for axis, offsets in _OFFSETS.items():
        score += offsets.get(config[axis], 0.0)
    score += _ABLATION_OFFSETS.get(ablation or "default", 0.0)
    score += 6.0 * (np.log10(config["learning_rate"] / 2e-4)) ** 2
    score += 4.0 * abs(config["beta1"] - 0.5) + 10.0 * (1.0 - config["beta2"]) ** 2
    if config["penalty"] == "gp" and config["discriminator_steps"] == 1:
        score += 3.0  # the paper: GP models benefit from n_dis = 5
    return score


def _trial_rows(item: dict[str, Any], study: str, rng: np.random.Generator, inception: bool,
                running: bool) -> list[dict[str, Any]]:
    config = item["config"]
    tid = trial_id(config)
    identity = {"study": study, "trial_id": tid, "arm": arm_name(config, item["ablation"]),
                "search": item["search"], "round": item["round"]}
    metric, other = ("fid", "fid_domain") if inception else ("fid_domain", "fid")
    protocol = {"fid_features": "inception_v3_pool3" if inception else "domain_cnn_digits",
                "fid_weights_sha256": "a" * 64 if inception else "b" * 64,
                "fid_resize": "bilinear_299" if inception else "none",
                "fid_precision": "float32",
                "fid_real_samples": _REAL_SAMPLES.get(config["dataset"], 2000),
                "fid_fake_samples": _REAL_SAMPLES.get(config["dataset"], 2000), "fid_split": "test"}
    nan_metrics = {m: np.nan for m in ("fid", "fid_domain", "kid", "kid_domain", "is", "is_domain", "precision",
                                      "recall", "precision_domain", "recall_domain", "ms_ssim", "d_loss", "g_loss")}
    base = {**identity, **config, **protocol}
    p_fail = 0.02
    p_diverge = 0.04 + 0.15 * (config["learning_rate"] >= 1e-3) + 0.15 * (config["normalization"] == "batch")
    if rng.random() < p_fail:
        reason = str(rng.choice(["RESOURCE_EXHAUSTED: out of memory allocating 2.1GiB",
                                 "ConfigError: image_size=128 is not supported by sndcgan on cifar10"]))
        return [{**base, **nan_metrics, "step": 0, "wall_time_s": float(rng.uniform(1, 5)), "device_seconds": 0.0,
                 "images_per_s": np.nan, "diverged": False, "status": "failed", "error": reason, "final": True}]
    truth = _true_score(config, item["ablation"]) + rng.normal(0, 2.0)
    n_evals = config["train_steps"] // config["eval_every"]
    diverge_at = int(rng.integers(1, n_evals + 1)) if rng.random() < p_diverge else None
    if running:
        n_evals = int(rng.integers(1, n_evals + 1))
    rate = float(rng.uniform(800, 1200))
    out = []
    for e in range(1, n_evals + 1):
        step = e * config["eval_every"]
        diverged = diverge_at is not None and e >= diverge_at
        value = truth + 40.0 * np.exp(-3.0 * e / n_evals) + abs(rng.normal(0, 1.0))
        if diverged:
            value = float(rng.uniform(250, 400))
        seconds = step * config["batch_size"] / rate
        last = e == n_evals or diverged
        row = {**base, **nan_metrics, "step": step, "wall_time_s": seconds * 1.1, "device_seconds": seconds,
               "images_per_s": rate, metric: value, "kid": value / 1000 if inception else np.nan,
               "kid_domain": np.nan if inception else value / 1000, "is": 8.0 - value / 20,
               "d_loss": float(rng.normal(0.5, 0.1)) if not diverged else float("nan"),
               "g_loss": float(rng.normal(2.0, 0.3)) if not diverged else float("nan"),
               "diverged": diverged, "final": last and not running,
               "status": "diverged" if diverged else ("running" if running else ("completed" if last else "running")),
               "error": "discriminator loss is NaN" if diverged else ""}
        row[other] = np.nan
        out.append(row)
        if diverged:
            break
    return out


def _sample_grid(score: float, rng: np.random.Generator, tile: int = 8, n: int = 4) -> np.ndarray:
    """A small RGB grid whose noise grows with the score (better score, cleaner blobs)."""
    yy, xx = np.mgrid[0:tile, 0:tile]
    noise = min(1.0, score / 120.0)
    image = np.zeros((n * tile, n * tile, 3), dtype=np.uint8)
    for r in range(n):
        for c in range(n):
            cy, cx = rng.uniform(2, tile - 2, size=2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
            colour = rng.uniform(0.3, 1.0, size=3)
            patch = (1 - noise) * blob[..., None] * colour + noise * rng.random((tile, tile, 3))
            image[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = np.clip(patch * 255, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))


def write_study(study_dir: str | pathlib.Path, name: str, plan: list[dict[str, Any]], seed: int = 0,
                inception: bool = True, running: bool = False, manifest: bool = True, samples: bool = True,
                search: str = "grid", references: dict[str, float] | None = None) -> pathlib.Path:
    """Writes one study directory (results.parquet, manifest.json, trials/*/samples*.png).

    `references`: the evaluator's reference points of the score metric written into every
    row ({kind: value}, kinds floor / noise / mean_image); None: SYNTHETIC_REFERENCES; {}: none.
    """
    study_dir = pathlib.Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for item in plan:
        trial_rows = _trial_rows(item, name, rng, inception, running)
        rows.extend(trial_rows)
        if samples and trial_rows[0]["status"] != "failed":
            trial_dir = study_dir / "trials" / trial_rows[0]["trial_id"]
            trial_dir.mkdir(parents=True, exist_ok=True)
            for row in trial_rows:
                value = row["fid"] if inception else row["fid_domain"]
                Image.fromarray(_sample_grid(value, rng)).save(trial_dir / f"samples_step{row['step']:08d}.png")
            Image.fromarray(_sample_grid(value, rng)).save(trial_dir / "samples.png")
    table = pd.DataFrame(rows)
    metric = "fid" if inception else "fid_domain"
    for kind, value in (SYNTHETIC_REFERENCES if references is None else references).items():
        table[f"{metric}_ref_{kind}"] = float(value)
    table.to_parquet(study_dir / "results.parquet", index=False)
    if manifest:
        trials = table["trial_id"].nunique()
        document = {
            "study": name, "space": "synthetic", "search": search,
            "arms": [dict(zip(("architecture", "loss", "normalization", "penalty", "dataset"), a.split("/")[:5]))
                     for a in sorted(table["arm"].unique())],
            "command": f"python -m study.run --space synthetic --study {name}",
            "argv": ["--space", "synthetic", "--study", name],
            "versions": {"python": "3.11.9", "jax": "0.10.2", "flax": "0.12.8", "ray": "2.40.0"},
            "git_commit": "0123456789abcdef0123456789abcdef01234567", "seed": seed,
            "started": "2026-11-20T08:00:00+00:00", "hardware": {"device": "cpu", "cores": 2, "memory_gib": 24},
            "trials_total": trials,
        }
        if not running:
            document.update({"finished": "2026-11-20T20:00:00+00:00", "wall_time_s": 43200.0})
        (study_dir / "manifest.json").write_text(json.dumps(document, indent=2))
    return study_dir


def write_synthetic_studies(root: str | pathlib.Path, rows: int = 600, seed: int = 0,
                            inception: bool = True, samples: bool = True) -> list[pathlib.Path]:
    """Writes studies `grid`, `bayes` and `rerun` under `root` with about `rows` rows in all
    (`samples=False`: no sample PNGs, for quick scale checks)."""
    root = pathlib.Path(root)
    plan = _plan(rows, np.random.default_rng(seed))
    parts = {"grid": [p for p in plan if p["search"] == "grid"],
             "bayes": [p for p in plan if p["search"] == "bayesian"],
             "rerun": [p for p in plan if p["search"] == "rerun"]}
    searches = {"grid": "grid", "bayes": "bayesian", "rerun": "rerun"}
    return [write_study(root / name, f"synthetic_{name}", items, seed=seed + i, inception=inception,
                        search=searches[name], samples=samples)
            for i, (name, items) in enumerate(parts.items())]


assert set(_BASE_CONFIG) == set(CONFIG_FIELDS), "synthetic base config must cover every TrialConfig field"
