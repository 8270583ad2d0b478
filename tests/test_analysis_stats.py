"""Statistics of the report on hand-made tables with known answers."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats, tables
from analysis.load import CONFIG_FIELDS
from analysis.synthetic import _BASE_CONFIG

INF = math.inf


def brute_force_expected_min(values, k, conditional_on_finite=True):
    """Exact E[min of k draws with replacement] by enumerating all N^k draw sequences."""
    mins = [min(seq) for seq in itertools.product(values, repeat=k)]
    finite = [m for m in mins if math.isfinite(m)]
    return sum(finite) / len(finite), (len(mins) - len(finite)) / len(mins)


# ----------------------------------------------------------------------------- top-k
@pytest.mark.parametrize("n, fraction, expected", [
    (24, 0.05, 2), (20, 0.05, 1), (21, 0.05, 2), (1, 0.05, 1), (100, 0.05, 5), (0, 0.05, 0), (10, 1.0, 10), (7, 0.5, 4),
])
def test_top_k_count(n, fraction, expected):
    assert stats.top_k_count(n, fraction) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_top_k_count_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="top fraction"):
        stats.top_k_count(10, fraction)


def test_top_k_scores_counts_failures_as_worst():
    scores = [INF, 30.0, INF, 10.0, 20.0]
    assert stats.top_k_scores(scores, 0.4).tolist() == [10.0, 20.0]
    # 3 finite of 5; the best 80% = 4 trials, the 4th is a failure (+inf)
    assert stats.top_k_scores(scores, 0.8).tolist() == [10.0, 20.0, 30.0, INF]


# ----------------------------------------------------------------------------- budget
def test_expected_best_closed_form_known_values():
    curve = stats.expected_best_of_k([3.0, 1.0, 2.0])
    assert curve["k"].tolist() == [1, 2, 3]
    # k=1: the mean; k=2: P(min=1)=5/9, P(min=2)=3/9, P(min=3)=1/9 -> 14/9
    assert curve["expected_best"].iloc[0] == pytest.approx(2.0)
    assert curve["expected_best"].iloc[1] == pytest.approx(14 / 9)
    assert (curve["p_all_failed"] == 0).all()


@pytest.mark.parametrize("values", [[5.0, 1.0, 4.0, 4.0], [2.0, 7.0, 1.0, 8.0, 3.0], [10.0]])
def test_expected_best_matches_enumeration(values):
    curve = stats.expected_best_of_k(values)
    for k in range(1, min(len(values), 4) + 1):
        expected, _ = brute_force_expected_min(values, k)
        assert curve.loc[curve["k"] == k, "expected_best"].item() == pytest.approx(expected, rel=1e-12)


def test_expected_best_with_failures_is_conditional_and_reports_p_all_failed():
    values = [1.0, 2.0, INF, 4.0, INF]
    curve = stats.expected_best_of_k(values)
    for k in (1, 2, 3):
        expected, p_failed = brute_force_expected_min(values, k)
        row = curve[curve["k"] == k].iloc[0]
        assert row["expected_best"] == pytest.approx(expected, rel=1e-12)
        assert row["p_all_failed"] == pytest.approx(p_failed)
    assert curve["p_all_failed"].iloc[0] == pytest.approx(0.4)
    # failures keep their place in N: the curve is worse than over the finite trials only
    assert curve["expected_best"].iloc[1] > stats.expected_best_of_k([1.0, 2.0, 4.0])["expected_best"].iloc[1]


def test_median_best_of_k_counts_failures_as_worst():
    curve = stats.expected_best_of_k([3.0, 1.0, 2.0])
    assert curve["median_best"].tolist() == [2.0, 1.0, 1.0]
    with_failures = stats.expected_best_of_k([1.0, INF, INF])
    # k=1: P(min <= 1) = 1/3 < 1/2 -> the median draw failed; k=2: 1 - (2/3)^2 = 5/9 >= 1/2
    assert with_failures["median_best"].tolist() == [INF, 1.0, 1.0]
    rng = np.random.default_rng(5)
    values = np.where(rng.random(15) < 0.3, INF, rng.normal(30, 4, 15))
    for k in (1, 2, 4):
        draws = values[rng.integers(0, values.size, size=(100_000, k))].min(axis=1)
        simulated = np.quantile(draws, 0.5, method="inverted_cdf")
        assert stats.expected_best_of_k(values, ks=[k])["median_best"].item() == simulated


def test_expected_best_all_failed_is_nan_with_p_one():
    curve = stats.expected_best_of_k([INF, INF])
    assert curve["expected_best"].isna().all()
    assert (curve["p_all_failed"] == 1).all()


def test_monte_carlo_bootstrap_agrees_with_closed_form():
    values = np.random.default_rng(3).normal(30, 5, size=40)
    curve = stats.expected_best_of_k(values, ks=[1, 3, 10])
    for k, closed in zip([1, 3, 10], curve["expected_best"]):
        simulated = stats.simulate_best_of_k(values, k, n_draws=200_000, seed=1)
        assert simulated == pytest.approx(closed, abs=0.05)


def test_expected_best_band_brackets_curve_and_is_seeded():
    values = np.random.default_rng(0).gamma(4.0, 5.0, size=30)
    curve = stats.expected_best_of_k(values)
    band = stats.expected_best_band(values, n_boot=300, seed=7)
    assert (band["lower"] <= curve["expected_best"] + 1e-9).all()
    assert (band["upper"] >= curve["expected_best"] - 1e-9).all()
    assert (band["upper"] > band["lower"]).iloc[0]
    again = stats.expected_best_band(values, n_boot=300, seed=7)
    pd.testing.assert_frame_equal(band, again)
    constant = stats.expected_best_band([5.0] * 6, n_boot=50, seed=0)
    assert np.allclose(constant[["lower", "upper"]].to_numpy(), 5.0)


# ----------------------------------------------------------------------------- trials
def _row(study, trial, step, fid, status, final, error="", diverged=False, arm="a/ns/spectral/gp/cifar10", **extra):
    row = {**_BASE_CONFIG, "study": study, "trial_id": trial, "arm": arm, "search": "grid", "round": 0, "step": step,
           "fid": fid, "fid_domain": np.nan, "d_loss": 0.5, "g_loss": 1.0, "device_seconds": float(step),
           "wall_time_s": float(step), "status": status, "final": final, "error": error, "diverged": diverged}
    row.update(extra)
    return row


def hand_made_rows() -> pd.DataFrame:
    return pd.DataFrame([
        _row("s1", "aaa", 100, 50.0, "running", False),
        _row("s1", "aaa", 200, 40.0, "running", False),
        _row("s1", "aaa", 300, 45.0, "completed", True),
        _row("s1", "bbb", 0, np.nan, "failed", True, error="out of memory"),
        _row("s1", "ccc", 100, 60.0, "running", False),
        _row("s1", "ccc", 200, np.nan, "diverged", True, error="D loss is NaN", diverged=True),
        _row("s1", "ddd", 100, 70.0, "running", False),
        _row("s2", "aaa", 100, 33.0, "completed", True),  # same trial id in another study
    ])


def test_trial_table_scores_min_over_evaluations_and_keeps_failures():
    trials = stats.trial_table(hand_made_rows(), "fid").set_index(["study", "trial_id"])
    assert len(trials) == 5
    assert trials.loc[("s1", "aaa"), "score"] == 40.0
    assert trials.loc[("s1", "aaa"), "best_step"] == 200
    assert trials.loc[("s1", "aaa"), "status"] == "completed"
    assert trials.loc[("s1", "bbb"), "score"] == INF
    assert trials.loc[("s1", "bbb"), "status"] == "failed"
    assert trials.loc[("s1", "bbb"), "error"] == "out of memory"
    assert trials.loc[("s1", "ccc"), "score"] == 60.0
    assert trials.loc[("s1", "ccc"), "status"] == "diverged"
    assert bool(trials.loc[("s1", "ccc"), "diverged"])
    assert trials.loc[("s1", "ddd"), "status"] == "running"
    assert trials.loc[("s2", "aaa"), "score"] == 33.0
    assert trials.loc[("s1", "aaa"), "evaluations"] == 3
    assert trials.loc[("s1", "aaa"), "last_step"] == 300


def test_choose_score_metric():
    rows = hand_made_rows()
    assert stats.choose_score_metric(rows) == "fid"
    rows["fid_domain"] = rows["fid"]
    rows["fid"] = np.nan
    assert stats.choose_score_metric(rows) == "fid_domain"
    assert "not comparable" in stats.metric_label("fid_domain")
    assert stats.metric_label("fid_domain", short=True) != "FID"


def test_split_by_protocol_keeps_dominant_protocol_per_dataset():
    rows = pd.DataFrame([
        _row("s", "t1", 100, 10.0, "completed", True, fid_real_samples=10000),
        _row("s", "t2", 100, 11.0, "completed", True, fid_real_samples=10000),
        _row("s", "t3", 100, 5.0, "completed", True, fid_real_samples=500),
        _row("s", "t4", 100, 20.0, "completed", True, fid_real_samples=3000, dataset="celebahq128"),
        _row("s", "t5", 0, np.nan, "failed", True, fid_real_samples=np.nan),
    ])
    kept, excluded = stats.split_by_protocol(rows, "fid")
    assert sorted(kept["trial_id"]) == ["t1", "t2", "t4", "t5"]  # celebahq128 has its own protocol: kept
    assert len(excluded) == 1
    assert excluded["dataset"].item() == "cifar10"
    assert excluded["trials"].item() == 1 and excluded["rows"].item() == 1
    assert "fid_real_samples=500" in excluded["protocol"].item()
    same, none = stats.split_by_protocol(rows[rows["trial_id"] != "t3"], "fid")
    assert len(same) == 4 and none.empty
    mixed_types = rows[rows["trial_id"] != "t3"].astype({"fid_real_samples": object})
    mixed_types.loc[mixed_types["trial_id"] == "t1", "fid_real_samples"] = "10000"
    mixed_types.loc[mixed_types["trial_id"] == "t2", "fid_real_samples"] = 10000.0
    assert stats.split_by_protocol(mixed_types, "fid")[1].empty


# ----------------------------------------------------------------------------- intervals
def test_bootstrap_difference_constant_shift_and_overlap():
    a = np.array([10.0, 11.0, 12.0, 13.0])
    assert stats.bootstrap_difference(np.min, a + 5.0, a, n_boot=200, seed=0)[0] <= 5.0
    low, high = stats.bootstrap_difference(np.median, np.full(5, 7.0), np.full(4, 2.0), n_boot=100, seed=0)
    assert (low, high) == (5.0, 5.0)
    low, high = stats.bootstrap_difference(np.median, a, a, n_boot=500, seed=0)
    assert low < 0 < high


def test_bootstrap_interval_of_mean_contains_mean():
    sample = np.arange(20, dtype=float)
    low, high = stats.bootstrap_interval(np.mean, sample, n_boot=500, seed=0)
    assert low < 9.5 < high
    assert stats.bootstrap_interval(np.mean, sample, n_boot=500, seed=0) == (low, high)


def test_seed_variance_mean_and_std():
    base = {**_BASE_CONFIG, "arm": "x", "status": "completed"}
    trials = pd.DataFrame([
        {**base, "seed": 0, "score": 10.0}, {**base, "seed": 1, "score": 12.0}, {**base, "seed": 2, "score": 14.0},
        {**base, "seed": 3, "score": INF},
        {**base, "learning_rate": 1e-3, "seed": 0, "score": 50.0},  # one seed only: not a seed setting
    ])
    table = stats.seed_variance(trials, n_boot=200)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["seeds"], row["failed"]) == (4, 1)
    assert row["mean"] == pytest.approx(12.0)
    assert row["std"] == pytest.approx(2.0)
    assert row["mean_ci_low"] <= 12.0 <= row["mean_ci_high"]


def test_importance_finds_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    n = 60
    lr = 10 ** rng.uniform(-5, -2, n)
    trials = pd.DataFrame({
        "arm": "x", "learning_rate": lr, "penalty_weight": 10 ** rng.uniform(-1, 2, n),
        "beta1": rng.uniform(0, 1, n), "beta2": rng.uniform(0, 1, n), "discriminator_steps": rng.choice([1, 5], n),
        "score": 30 + 10 * (np.log10(lr) + 3.5) ** 2 + rng.normal(0, 0.5, n),
    })
    table = stats.hyperparameter_importance(trials, seed=0)
    row = table.iloc[0]
    others = [row[h] for h in ("penalty_weight", "beta1", "beta2", "discriminator_steps")]
    assert row["learning_rate"] > 10 * max(others)
    assert row["oob_r2"] > 0.7
    too_few = stats.hyperparameter_importance(trials.head(5))
    assert too_few.empty


# ----------------------------------------------------------------------------- tables
def _ablation_trials():
    context = {**_BASE_CONFIG, "architecture": "resnet_cifar", "penalty": "none", "arm": "r", "status": "completed"}
    return pd.DataFrame([
        {**context, "score": 10.0}, {**context, "score": 12.0}, {**context, "score": 14.0},
        {**context, "resnet_d_cin": True, "score": 15.0}, {**context, "resnet_d_cin": True, "score": 17.0},
        {**context, "resnet_d_cin": True, "score": 19.0},
        {**context, "resnet_d_cin": True, "resnet_d_opt": True, "score": INF},
    ])


def test_ablation_switch_names():
    row = dict(_BASE_CONFIG)
    assert tables.ablation_switch(row) == "default"
    assert tables.ablation_switch({**row, "resnet_d_cin": True, "resnet_d_opt": True}) == "CIN OPT"
    assert tables.ablation_switch({**row, "generator_bn_epsilon": 2e-5}) == "EPS"
    assert tables.ablation_switch({**row, "generator_bn_epsilon": 1e-5}) == "default"
    everything = {**row, "resnet_d_shortcut": "identity", "resnet_d_cin": True, "resnet_d_opt": True,
                  "resnet_d_pooling": "sum", "resnet_tanh": True, "generator_bn_epsilon": 2e-5}
    assert tables.ablation_switch(everything) == "ALL"


def test_ablation_table_differences():
    table = tables.ablation_table(_ablation_trials(), n_boot=300).set_index("switch")
    assert list(table.index) == ["default", "CIN", "CIN OPT"]
    assert table.loc["CIN", "best_diff"] == pytest.approx(5.0)
    assert table.loc["CIN", "median_diff"] == pytest.approx(5.0)
    assert table.loc["CIN", "median_diff_low"] <= 5.0 <= table.loc["CIN", "median_diff_high"]
    assert table.loc["CIN OPT", "no_score"] == 1 and table.loc["CIN OPT", "best"] == INF
    assert tables.ablation_table(_ablation_trials().iloc[:3]).empty  # default only: no ablation


def test_top_k_table_and_rounds_table():
    trials = pd.DataFrame({"dataset": "d", "loss": ["ns"] * 20 + ["wgan"] * 3,
                           "score": list(range(20, 0, -1)) + [INF, 5.0, 6.0]})
    table = tables.top_k_table(trials, "loss", 0.05).set_index("loss")
    assert table.loc["ns", "top_m"] == 1 and table.loc["ns", "top_best"] == 1.0
    assert table.loc["wgan", "trials"] == 3 and table.loc["wgan", "no_score"] == 1
    bayes = pd.DataFrame({"search": "bayesian", "arm": "a", "round": [0, 0, 1, 1, 2],
                          "score": [30.0, 25.0, 28.0, 27.0, 20.0]})
    rounds = tables.rounds_table(bayes)
    assert rounds["round_best"].tolist() == [25.0, 27.0, 20.0]
    assert rounds["best_so_far"].tolist() == [25.0, 25.0, 20.0]


def test_latex_is_booktabs_and_escaped():
    text = tables.to_latex_booktabs(pd.DataFrame({"arm_name": ["a_b & 50%"], "score": [1.5]}), caption="x_y")
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"a\_b \& 50\%" in text and r"arm\_name" in text and r"\caption{x\_y}" in text
    assert r"\begin{tabular}{lr}" in text


def test_config_fields_match_synthetic_base():
    assert set(CONFIG_FIELDS) == set(_BASE_CONFIG)


def test_sensitivity_table_groups_grid_values_and_bins_continuous_ones():
    grid = pd.DataFrame({"arm": "g", "learning_rate": [1e-4, 1e-4, 2e-4, 2e-4, 2e-4], "penalty_weight": 1.0,
                         "beta1": 0.5, "beta2": 0.9, "discriminator_steps": 1,
                         "score": [10.0, INF, 5.0, 7.0, 6.0]})
    table = tables.sensitivity_table(grid).set_index("value")
    assert list(table["parameter"].unique()) == ["learning_rate"]  # the only varying parameter
    assert table.loc["0.0001", "trials"] == 2 and table.loc["0.0001", "median"] == INF
    assert table.loc["0.0002", "median"] == 6.0 and table.loc["0.0002", "best"] == 5.0
    continuous = pd.DataFrame({"arm": "b", "learning_rate": np.logspace(-5, -2, 20), "penalty_weight": 1.0,
                               "beta1": 0.5, "beta2": 0.9, "discriminator_steps": 1, "score": np.arange(20.0)})
    binned = tables.sensitivity_table(continuous)
    assert len(binned) == 5 and binned["trials"].tolist() == [4] * 5
    assert binned["value"].str.startswith("log10 (").all()


def test_budget_curves_thin_large_arms_but_keep_key_points():
    assert tables.budget_ks(12).tolist() == list(range(1, 13))
    ks = tables.budget_ks(3000)
    assert {1, 5, 10, 3000} <= set(ks.tolist()) and len(ks) <= 84 and (np.diff(ks) > 0).all()
    scores = np.random.default_rng(1).normal(40, 5, 3000)
    trials = pd.DataFrame({"arm": "big", "dataset": "d", "score": scores})
    curves = tables.budget_curves(trials, n_boot=20, seed=0)
    exact = stats.expected_best_of_k(scores, ks=[1, 10, 3000])
    got = curves.set_index("k").loc[[1, 10, 3000], "expected_best"].to_numpy()
    assert np.allclose(got, exact["expected_best"].to_numpy())
    assert curves["expected_best"].iloc[0] == pytest.approx(scores.mean())
    # k = N draws find the minimum with probability 1 - (1 - 1/N)^N ~ 0.63: close to, not at, the min
    assert scores.min() < curves["expected_best"].iloc[-1] < np.sort(scores)[5]


def test_html_table_escapes_and_cuts_long_cells():
    table = pd.DataFrame({"error": ["<b>" + "x" * 1000], "score": [INF]})
    text = tables.html_table(table)
    assert "&lt;b&gt;" in text and "<b>" not in text
    assert "x" * 300 not in text and " …" in text
    assert '<td class="num">inf</td>' in text


def test_arm_rank_stability_agrees_reverses_and_bounds():
    from analysis import stats

    rng = np.random.default_rng(0)
    arms = np.repeat(list("abcdefgh"), 18)
    a = pd.DataFrame({"arm": arms, "score": np.repeat(np.arange(8) * 10.0, 18) + rng.random(144)})
    same_order = a.assign(score=a["score"] + rng.random(144))
    rho, (low, high), table = stats.arm_rank_stability(a, same_order, n_boot=200)
    assert rho == 1.0 and low == high == 1.0 and len(table) == 8
    # top-5% of 18 = the best trial: the arm's minimum, inside its bootstrap interval
    assert np.allclose(table["median_a"], a.groupby("arm")["score"].min().to_numpy())
    assert (table["low_a"] <= table["median_a"]).all() and (table["median_a"] <= table["high_a"]).all()
    rho, _, _ = stats.arm_rank_stability(a, a.assign(score=-a["score"]), n_boot=50)
    assert rho == -1.0
    # overlapping arms: the interval is wide and contains the point estimate
    noisy = pd.DataFrame({"arm": arms, "score": rng.random(144)})
    rho, (low, high), _ = stats.arm_rank_stability(noisy, noisy.assign(score=rng.random(144)), n_boot=300)
    assert -1.0 <= low <= rho <= high <= 1.0 and high - low > 0.5
