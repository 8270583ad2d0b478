"""The search spaces of Kurach et al. (ICML 2019), as data (spec: study.md).

Arms fix (loss, normalization, penalty) and, where a study fixes it, the architecture
or an ablation switch; the dataset, scale and (unless an arm fixes it) the
architecture come from the command line, so the same space runs on the embedded
`digits` data at `tiny` scale or on CIFAR-10 at `paper` scale.
"""
from __future__ import annotations

from search_spaces.space import SPACES, Choice, Range, Space
from study.schema import ABLATION_SWITCHES

# Table 1: lr x lambda x (beta1, beta2, n_dis) = 3 x 2 x 4 = 24 settings (12 without a penalty).
TABLE1_AXES = (
    (("learning_rate",), (2e-4, 1e-4, 1e-3)),
    (("penalty_weight",), (1.0, 10.0)),
    (("beta1", "beta2", "discriminator_steps"), ((0.5, 0.9, 5), (0.5, 0.999, 1), (0.5, 0.999, 5), (0.9, 0.999, 5))),
)

# Table 2 (and the code's ranges, compare_gan_v2 §6a): lr log [1e-5, 1e-2], beta1, beta2
# linear [0, 1], n_dis in {1, 5}; lambda log [1e-1, 1e2], or [1e-4, 1e1] for L2.
TABLE2_RANGES = {
    "learning_rate": Range(1e-5, 1e-2, log=True),
    "beta1": Range(0.0, 1.0),
    "beta2": Range(0.0, 1.0),
    "discriminator_steps": Choice((1, 5)),
}
TABLE2_LAMBDA = {
    "gp": Range(1e-1, 1e2, log=True),
    "dragan": Range(1e-1, 1e2, log=True),
    "l2": Range(1e-4, 1e1, log=True),
}

NORMS = ("none", "batch", "layer", "spectral")

# Study 1 (normalization and regularization), the default arms of `table1`: NS loss,
# each D normalization without a penalty and with WGAN-GP.
NORM_GP_ARMS = tuple(
    {"loss": "ns", "normalization": norm, "penalty": penalty} for norm in NORMS for penalty in ("none", "gp")
)
# Study 1 in full: every normalization with every penalty.
NORM_PENALTY_ARMS = tuple(
    {"loss": "ns", "normalization": norm, "penalty": penalty}
    for norm in NORMS
    for penalty in ("none", "gp", "dragan", "l2")
)
# Study 2 (losses): each loss unregularized, with GP, with SN; DRAGAN = NS + DRAGAN penalty.
LOSS_ARMS = tuple(
    {"loss": loss, "normalization": norm, "penalty": penalty}
    for loss in ("mm", "ns", "wgan", "ls", "began")
    for norm, penalty in (("none", "none"), ("none", "gp"), ("spectral", "none"))
) + ({"loss": "ns", "normalization": "none", "penalty": "dragan"},)
# Study 4 (combinations): NS, GP or DRAGAN with SN or LN (the paper: ResNet19).
COMBINATION_ARMS = tuple(
    {"loss": "ns", "normalization": norm, "penalty": penalty}
    for penalty in ("gp", "dragan")
    for norm in ("spectral", "layer")
)
# Study 5 (ResNet ablation; the paper: CIFAR-10, ResNet-CIFAR, SN, NS, no penalty).
ABLATION_ARMS = tuple(
    {"architecture": "resnet_cifar", "loss": "ns", "normalization": "spectral", "penalty": "none", **switch}
    for switch in ABLATION_SWITCHES.values()
)

SPACES.add("table1", Space(
    name="table1",
    description="Table 1 grid (24 settings; 12 without a penalty) over study 1's default arms: "
                "NS loss, D normalization none/batch/layer/spectral, without a penalty and with WGAN-GP",
    search="grid", arms=NORM_GP_ARMS, grid_axes=TABLE1_AXES,
))
SPACES.add("normalization", Space(
    name="normalization",
    description="Study 1 in full: NS loss, D normalization x penalty (none/GP/DRAGAN/L2), Table 1 grid",
    search="grid", arms=NORM_PENALTY_ARMS, grid_axes=TABLE1_AXES,
))
SPACES.add("losses", Space(
    name="losses",
    description="Study 2: MM/NS/WGAN/LS/BEGAN x (plain, GP, SN), plus NS + DRAGAN, Table 1 grid",
    search="grid", arms=LOSS_ARMS, grid_axes=TABLE1_AXES,
))
SPACES.add("combination", Space(
    name="combination",
    description="Study 4: NS with GP or DRAGAN combined with SN or LN, Table 1 grid (the paper: ResNet19)",
    search="grid", arms=COMBINATION_ARMS, grid_axes=TABLE1_AXES,
))
SPACES.add("ablation", Space(
    name="ablation",
    description="Study 5: ResNet-CIFAR ablation switches (default, identity, CIN, OPT, CIN+OPT, SUM, TAN, EPS, ALL), "
                "SN + NS, Table 1 grid (the paper: CIFAR-10)",
    search="grid", arms=ABLATION_ARMS, grid_axes=TABLE1_AXES,
))
SPACES.add("table2", Space(
    name="table2",
    description="Table 2: sequential Bayesian optimization, 120 settings in 12 rounds of 10 per arm, "
                "over study 1's default arms",
    search="bayesian", arms=NORM_GP_ARMS, ranges=TABLE2_RANGES, penalty_weight_ranges=TABLE2_LAMBDA,
    rounds=12, round_size=10,
))
SPACES.add("random24", Space(
    name="random24",
    description="24 random settings from the Table 2 ranges per arm (study 4's combination arms)",
    search="random", arms=COMBINATION_ARMS, ranges=TABLE2_RANGES, penalty_weight_ranges=TABLE2_LAMBDA,
    num_samples=24,
))
SPACES.add("smoke", Space(
    name="smoke",
    description="Two short trials (NS + SN, no penalty, two learning rates): seconds, for tests",
    search="grid", arms=({"loss": "ns", "normalization": "spectral", "penalty": "none"},),
    grid_axes=((("learning_rate",), (2e-4, 1e-3)),),
    base={"train_steps": 20, "eval_every": 10, "eval_samples": 100},
))
SPACES.add("rerun", Space(
    name="rerun",
    description="The best 5 settings per arm of a finished study (--from STUDY_DIR), each re-trained "
                "with 3 new seeds (--top, --seeds): seed variance of reported numbers",
    search="rerun", arms=(), top=5, rerun_seeds=3,
))
