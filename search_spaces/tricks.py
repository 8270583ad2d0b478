"""The `tricks` space: each training trick against the baseline, on the
recommended arm (NS + SN + GP) and on a fragile arm (NS, no normalization, no penalty),
each cell the Table 1 grid.

A trick arm is a base arm plus the trick's config fields at non-default values; its arm
label (`search_spaces.arm_name`) is the base label plus `+field=value` for each of them
(`trick_label`), so the report's arm groups, budget curves and the "Tricks" section tell
the tricks apart without an extra results column. The baseline arms are the plain arms.
"""
from __future__ import annotations

from typing import Any

from search_spaces.paper import TABLE1_AXES
from search_spaces.space import SPACES, Space, trick_label  # noqa: F401 (trick_label: part of this module's API)
from study.schema import TRICK_DEFAULTS  # noqa: F401

# Each trick at the value of its paper (or the common one).
TRICKS: dict[str, dict[str, Any]] = {
    "baseline": {},
    # one-sided label smoothing, real target 0.9 (Salimans et al. 2016)
    "label_smoothing": {"label_smoothing": 0.1},
    # 5 % of D's targets flipped (the "noisy labels" of the GAN hacks list)
    "noisy_labels": {"label_flip_probability": 0.05},
    # instance noise, std 0.1 in the data range [0, 1] annealed to 0 at the end of training
    # (Sonderby et al. 2016; Arjovsky & Bottou 2017)
    "instance_noise": {"instance_noise_std": 0.1},
    "z_normal": {"latent_distribution": "normal"},
    # D trained by SGD with momentum 0.9 at the grid's lr (G keeps Adam)
    "d_sgd": {"discriminator_optimizer": "sgd", "discriminator_sgd_momentum": 0.9},
    # TTUR (Heusel et al. 2017): D's lr fixed at 4e-4 while the grid sweeps G's
    "ttur": {"discriminator_learning_rate": 4e-4},
    # minibatch standard deviation, groups of 4 (Karras et al. 2018)
    "minibatch_stddev": {"minibatch_stddev_group_size": 4},
}

BASE_ARMS: dict[str, dict[str, Any]] = {
    "recommended": {"loss": "ns", "normalization": "spectral", "penalty": "gp"},
    "fragile": {"loss": "ns", "normalization": "none", "penalty": "none"},
}

TRICK_ARMS = tuple({**base, **trick} for base in BASE_ARMS.values() for trick in TRICKS.values())


SPACES.add("tricks", Space(
    name="tricks",
    description="Training tricks (label smoothing, noisy labels, instance noise, normal z, SGD D, TTUR, "
                "minibatch stddev) each against the baseline, on NS+SN+GP and on plain NS, Table 1 grid",
    search="grid", arms=TRICK_ARMS, grid_axes=TABLE1_AXES,
))
