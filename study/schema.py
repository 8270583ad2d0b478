"""The study's record contract, as plain data: file names, columns, statuses, and the
defaults that label arms. It imports nothing, so `study`, `search_spaces` and `analysis`
(which must open a report without JAX or Ray) all read the same names from here.

A results row (study.storage.store) is: the identity columns (study, search, round, arm),
`trial_id`, every TrialConfig field (CONFIG_FIELDS), `step`, the progress columns, the
metric columns, their reference points `<metric>_ref_<kind>`, the FID protocol columns,
and `status` / `diverged` / `error` / `score`.
"""
from __future__ import annotations

from typing import Any

# Files of a study folder (a local folder or a storage URI).
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.parquet"
TRIALS_DIR = "trials"  # one folder per trial id below it
ROWS_FILE = "rows.parquet"  # in a trial folder: that trial's rows
CONFIG_FILE = "config.json"  # in a trial folder: its TrialConfig

# The TrialConfig fields, in their declaration order (study.trial.config.TrialConfig;
# tests/test_config.py checks the two agree).
CONFIG_FIELDS: tuple[str, ...] = (
    "dataset", "architecture", "loss", "normalization", "penalty",
    "penalty_weight", "learning_rate", "beta1", "beta2", "discriminator_steps",
    "batch_size", "z_dim", "train_steps", "eval_every", "seed", "scale", "image_size",
    "width_multiplier", "eval_samples", "fid_split", "discriminator_learning_rate",
    "adam_epsilon", "adam_form", "weight_clip", "began_gamma", "began_k_learning_rate",
    "resnet_d_shortcut", "resnet_d_cin", "resnet_d_opt", "resnet_d_pooling", "resnet_tanh",
    "generator_bn_epsilon", "label_smoothing", "label_flip_probability", "instance_noise_std",
    "instance_noise_anneal_steps", "latent_distribution", "discriminator_optimizer", "discriminator_sgd_momentum",
    "minibatch_stddev_group_size", "conditioning", "acgan_class_weight", "infogan_categories", "infogan_continuous",
    "infogan_weight",
)
# The fixed axes a study compares (the paper's "cells").
AXES: tuple[str, ...] = ("loss", "normalization", "penalty", "architecture", "dataset")
# The swept hyperparameters of Tables 1 and 2.
HYPERPARAMETERS: tuple[str, ...] = ("learning_rate", "penalty_weight", "beta1", "beta2", "discriminator_steps")

# The ResNet ablation switches of the paper's study 5, at their defaults (the paper's ResNet-CIFAR).
ABLATION_DEFAULTS: dict[str, Any] = {
    "resnet_d_shortcut": "conv", "resnet_d_cin": False, "resnet_d_opt": False, "resnet_d_pooling": "mean",
    "resnet_tanh": False, "generator_bn_epsilon": None,
}
ABLATION_FIELDS: tuple[str, ...] = tuple(ABLATION_DEFAULTS)
# Study 5's named networks: each switches some of ABLATION_DEFAULTS away from its default.
ABLATION_SWITCHES: dict[str, dict[str, Any]] = {
    "default": {},
    "identity": {"resnet_d_shortcut": "identity"},
    "cin": {"resnet_d_cin": True},
    "opt": {"resnet_d_opt": True},
    "cin_opt": {"resnet_d_cin": True, "resnet_d_opt": True},
    "sum": {"resnet_d_pooling": "sum"},
    "tan": {"resnet_tanh": True},
    "eps": {"generator_bn_epsilon": 2e-5},
}
ABLATION_SWITCHES["all"] = {k: v for switch in list(ABLATION_SWITCHES.values()) for k, v in switch.items()}

# The training tricks and their defaults (the paper's training): a trial with none of them
# at another value is a baseline. Results written before these fields existed lack the
# columns and are all baselines.
TRICK_DEFAULTS: dict[str, Any] = {
    "label_smoothing": 0.0, "label_flip_probability": 0.0, "instance_noise_std": 0.0,
    "latent_distribution": "uniform", "discriminator_optimizer": "adam", "discriminator_sgd_momentum": 0.9,
    "discriminator_learning_rate": None, "minibatch_stddev_group_size": 0,
}
# Conditional-GAN fields at their defaults (the paper's unconditional GAN).
CONDITIONAL_DEFAULTS: dict[str, Any] = {"conditioning": "none", "infogan_categories": 0, "infogan_continuous": 0}

METRIC_COLUMNS: tuple[str, ...] = (
    "fid", "fid_domain", "kid", "kid_domain", "is", "is_domain", "precision", "recall",
    "precision_domain", "recall_domain", "ms_ssim", "d_loss", "g_loss",
    "classes_covered_domain", "mode_score_domain", "am_score_domain",
    # the 1-NN two-sample test and within-class diversity (every evaluation), conditional scores
    "m_is", "m_is_domain", "one_nn_accuracy", "one_nn_real_accuracy", "one_nn_fake_accuracy",
    "one_nn_accuracy_domain", "one_nn_real_accuracy_domain", "one_nn_fake_accuracy_domain",
    "gan_test_domain", "gan_train_domain", "fid_domain_class_mean", "fid_domain_class_max", "fid_domain_classes",
)
# Reference points of the evaluator (study.metrics.evaluator), in every row as `<metric>_ref_<kind>`.
REFERENCE_KINDS: tuple[str, ...] = ("floor", "noise", "mean_image")
# What makes two FIDs comparable: every row records them.
PROTOCOL_COLUMNS: tuple[str, ...] = (
    "fid_features", "fid_weights_sha256", "fid_resize", "fid_precision",
    "fid_real_samples", "fid_fake_samples", "fid_split",
)
PROGRESS_COLUMNS: tuple[str, ...] = ("step", "wall_time_s", "device_seconds", "images_per_s")
# Without these a results table cannot be analysed at all.
REQUIRED_COLUMNS: tuple[str, ...] = ("trial_id", "arm", "step", "status")
STATUSES: tuple[str, ...] = ("running", "completed", "diverged", "failed")
