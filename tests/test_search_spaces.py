"""The shipped search spaces expand to the paper's counts, without duplicates."""
import itertools
import json

import pytest

import search_spaces
from study.trial.config import TrialConfig

BASE = {"dataset": "digits", "scale": "tiny", "architecture": "sndcgan"}
HYPER = ("learning_rate", "penalty_weight", "beta1", "beta2", "discriminator_steps")


def _settings(trials):
    return [tuple(t[k] for k in HYPER) for t in trials]


def test_table1_single_arm_is_exactly_the_papers_24_settings():
    trials = search_spaces.expand(search_spaces.get("table1"), BASE, {"normalization": {"spectral"}, "penalty": {"gp"}})
    expected = {
        (lr, lam, b1, b2, n)
        for lr, lam, (b1, b2, n) in itertools.product(
            (2e-4, 1e-4, 1e-3), (1.0, 10.0), ((0.5, 0.9, 5), (0.5, 0.999, 1), (0.5, 0.999, 5), (0.9, 0.999, 5))
        )
    }
    settings = _settings(trials)
    assert len(settings) == 24 and len(set(settings)) == 24
    assert set(settings) == expected


def test_lambda_collapses_without_a_penalty():
    trials = search_spaces.expand(search_spaces.get("table1"), BASE, {"normalization": {"batch"}, "penalty": {"none"}})
    assert len(trials) == 12 and len(set(_settings(trials))) == 12
    assert {t["penalty_weight"] for t in trials} == {0.0}


def _arm_key(trial):
    fixed = {k: v for k, v in trial.items() if k not in HYPER}
    return json.dumps(fixed, sort_keys=True)


@pytest.mark.parametrize(
    "name, arms, total",
    [
        ("table1", 8, 4 * 12 + 4 * 24),  # NS x {none, BN, LN, SN} x {no penalty: 12, GP: 24}
        ("normalization", 16, 4 * 12 + 12 * 24),  # x {none, GP, DRAGAN, L2}
        ("losses", 16, 10 * 12 + 6 * 24),  # 5 losses x {plain, SN}: 12; 5 x GP + NS-DRAGAN: 24
        ("combination", 4, 4 * 24),
        ("ablation", 9, 9 * 12),
        ("random24", 4, 4 * 24),
        ("smoke", 1, 2),
        ("tricks", 16, 8 * 24 + 8 * 12),  # 8 tricks (baseline included) x {NS+SN+GP: 24, plain NS: 12}
    ],
)
def test_every_shipped_space_expands_to_its_count(name, arms, total):
    space = search_spaces.get(name)
    trials = search_spaces.expand(space, BASE)
    assert len(search_spaces.select_arms(space, None, BASE)) == arms
    assert len(trials) == total
    keys = [json.dumps(t, sort_keys=True) for t in trials]
    assert len(keys) == len(set(keys))
    per_arm = {}
    for trial in trials:
        per_arm.setdefault(_arm_key(trial), []).append(trial)
    assert len(per_arm) == arms
    if space.search == "grid" and name != "smoke":
        for members in per_arm.values():
            weighted = members[0]["penalty"] in search_spaces.WEIGHTED_PENALTIES
            assert len(members) == (24 if weighted else 12)


def test_random24_is_reproducible_and_within_table2_ranges():
    space = search_spaces.get("random24")
    first, second = search_spaces.expand(space, BASE), search_spaces.expand(space, BASE)
    assert first == second
    for trial in first:
        assert 1e-5 <= trial["learning_rate"] <= 1e-2
        assert 0 <= trial["beta1"] <= 1 and 0 <= trial["beta2"] <= 1
        assert trial["discriminator_steps"] in (1, 5)
        assert 1e-1 <= trial["penalty_weight"] <= 1e2
    # Filtering arms does not change the settings an arm gets.
    only = search_spaces.expand(space, BASE, {"normalization": {"layer"}, "penalty": {"gp"}})
    assert only == [t for t in first if t["normalization"] == "layer" and t["penalty"] == "gp"]


def test_table1_trials_are_valid_configs():
    for trial in search_spaces.expand(search_spaces.get("table1"), BASE):
        TrialConfig.from_dict(trial)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("loss", "is not FIELD=VALUE"),
        ("colour=red", "--arms field 'colour' does not describe the arms"),
        ("normalization=weird", "--arms normalization='weird' matches no arm"),
    ],
)
def test_bad_arm_filters_are_one_line_errors(text, fragment):
    with pytest.raises(search_spaces.ArmFilterError, match=fragment):
        search_spaces.select_arms(search_spaces.get("table1"), search_spaces.parse_arm_filter(text), BASE)


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown search space 'tabel1'; choose one of: table1"):
        search_spaces.get("tabel1")


def test_a_conditional_model_is_its_own_arm():
    """Reports group trials by arm: an ACGAN or InfoGAN trial must never share the arm of the
    unconditional GAN with the same loss, normalization and penalty."""
    from study.trial.config import TrialConfig

    defaults = {f: getattr(TrialConfig(), f) for f in search_spaces.CONDITIONAL_ARM_DEFAULTS}
    assert defaults == search_spaces.CONDITIONAL_ARM_DEFAULTS
    plain = {"architecture": "sndcgan", "loss": "ns", "normalization": "spectral", "penalty": "gp", "dataset": "digits"}
    assert search_spaces.arm_name(plain) == "sndcgan/ns/spectral/gp/digits"
    assert search_spaces.arm_name({**plain, "conditioning": "acgan", "acgan_class_weight": 10.0}) == \
        "sndcgan/ns/spectral/gp/digits+conditioning=acgan"
    assert search_spaces.arm_name({**plain, "infogan_categories": 10}) == "sndcgan/ns/spectral/gp/digits+infogan_categories=10"
    # ResNet ablation arms (study 5) are nine networks: nine labels, the default one plain.
    ablation = [search_spaces.arm_name({**arm, "dataset": "cifar10"})
                for arm in search_spaces.get("ablation").arms]
    assert len(set(ablation)) == 9 and ablation[0] == "resnet_cifar/ns/spectral/none/cifar10"
    assert "resnet_cifar/ns/spectral/none/cifar10+resnet_d_cin=True+resnet_d_opt=True" in ablation
    assert search_spaces.arm_name({**plain, "generator_bn_epsilon": float("nan")}) == "sndcgan/ns/spectral/gp/digits"
