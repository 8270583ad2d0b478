"""The statistics of the report: trial scores, top-k%, expected best under a budget,
bootstrap intervals, seed variance and hyperparameter importance.

Conventions (Kurach et al. 2019; Lučić et al. 2018):
- A trial's score is the MIN of the score metric over its evaluations (lower is better).
- A trial without a finite score (failed, or diverged before any finite evaluation)
  scores +inf: it stays in every denominator, never dropped.
All randomness is seeded by an explicit argument.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from analysis.load import CONFIG_FIELDS, HYPERPARAMETERS, PROTOCOL_COLUMNS

TRIAL_KEY = ["study", "trial_id"]

METRIC_LABELS = {
    "fid": "FID (Inception)",
    "fid_domain": "domain-feature FID (not comparable with published FIDs)",
}


def metric_label(metric: str, short: bool = False) -> str:
    """The name a plot axis shows: never plain "FID" for the domain-feature variant."""
    if short and metric == "fid_domain":
        return "domain FID (not Inception)"
    return METRIC_LABELS.get(metric, metric)


def choose_score_metric(rows: pd.DataFrame) -> str:
    """`fid` if any row has an Inception FID, else `fid_domain` (the study contract)."""
    if "fid" in rows.columns and rows["fid"].notna().any():
        return "fid"
    return "fid_domain"


# ----------------------------------------------------------------------------- protocol
def protocol_key(rows: pd.DataFrame) -> pd.Series:
    """One string per row naming its FID protocol (features, weights, resize, precision,
    sample counts, split); columns the table lacks read as "?"."""
    parts = []
    for column in PROTOCOL_COLUMNS:
        if column in rows.columns:
            values = rows[column]
            numbers = pd.to_numeric(values, errors="coerce")
            if values.notna().any() and numbers[values.notna()].notna().all():
                # 10000, 10000.0 and "10000" (merged studies, NaN-widened ints) are one protocol
                values = numbers.map(lambda v: format(v, "g"), na_action="ignore")
            parts.append(column + "=" + values.astype(object).where(values.notna(), "?").astype(str))
        else:
            parts.append(pd.Series(column + "=?", index=rows.index))
    key = parts[0]
    for part in parts[1:]:
        key = key + "; " + part
    return key


def split_by_protocol(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keeps, per dataset, only the score rows of the dominant FID protocol.

    Scores measured under different protocols (feature network, weights, resize,
    sample counts, split) are not comparable, so they must not meet in one plot.
    Datasets are compared only within themselves, so the check is per dataset. The
    protocol used by the most trials wins; score rows of other protocols are removed
    and returned as a summary (dataset, protocol, trials, rows) for a prominent notice;
    a trial left with no score row at all is left out entirely. Rows without a score
    (losses only, failures) of other trials are kept.
    """
    scored = rows[metric].notna()
    if not scored.any():
        return rows, pd.DataFrame(columns=["dataset", "protocol", "trials", "rows"])
    keys = protocol_key(rows)
    scored_rows = rows.loc[scored, ["dataset", *TRIAL_KEY]].assign(protocol=keys[scored])
    counts = (scored_rows.drop_duplicates(["dataset", "protocol", *TRIAL_KEY])
              .groupby(["dataset", "protocol"]).size().rename("trials").reset_index())
    counts = counts.sort_values(["dataset", "trials", "protocol"], ascending=[True, False, True])
    dominant = counts.drop_duplicates("dataset").set_index("dataset")["protocol"]
    row_dominant = rows["dataset"].map(dominant)
    drop = scored & (keys != row_dominant)
    if not drop.any():
        return rows, pd.DataFrame(columns=["dataset", "protocol", "trials", "rows"])
    excluded = rows.loc[drop, ["dataset", *TRIAL_KEY]].assign(protocol=keys[drop])
    trial_counts = excluded.drop_duplicates().groupby(["dataset", "protocol"]).size().rename("trials")
    row_counts = excluded.groupby(["dataset", "protocol"]).size().rename("rows")
    summary = pd.concat([trial_counts, row_counts], axis=1).reset_index()
    # A trial whose every score row was measured under another protocol is left out as a
    # whole (not turned into a failure): it is listed in the summary, not scored.
    had_score = rows.loc[scored, TRIAL_KEY].drop_duplicates()
    keeps_score = rows.loc[scored & ~drop, TRIAL_KEY].drop_duplicates()
    lost = had_score.merge(keeps_score, how="left", indicator=True)
    lost = lost.loc[lost["_merge"] == "left_only", TRIAL_KEY]
    lost_keys = pd.MultiIndex.from_frame(lost)
    in_lost = pd.MultiIndex.from_frame(rows[TRIAL_KEY]).isin(lost_keys)
    return rows.loc[~drop & ~in_lost].copy(), summary


# ----------------------------------------------------------------------------- trials
def trial_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per trial (study, trial_id): its config, score, best step and outcome.

    score      MIN of `metric` over the trial's evaluation rows; +inf if none is finite.
    best_step  the step of that minimum (NaN without a finite score).
    status     of the trial's final row, else of its last row by step (a running study).
    error      the first non-empty reason among its rows.
    """
    if rows.empty:
        return pd.DataFrame(columns=[*TRIAL_KEY, "arm", "search", "round", *CONFIG_FIELDS, "status", "score",
                                     "best_step", "error", "diverged", "evaluations", "last_step",
                                     "device_seconds", "wall_time_s"])
    rows = rows.assign(_value=rows[metric].where(np.isfinite(rows[metric]), np.nan))
    ordered = rows.sort_values([*TRIAL_KEY, "final", "step"], kind="stable")
    grouped = ordered.groupby(TRIAL_KEY, sort=False)
    last = grouped.tail(1).set_index(TRIAL_KEY)
    best_idx = rows["_value"].dropna().groupby([rows["study"], rows["trial_id"]]).idxmin()
    best = rows.loc[best_idx.values, [*TRIAL_KEY, "_value", "step"]].set_index(TRIAL_KEY)
    errors = rows.loc[rows["error"] != "", [*TRIAL_KEY, "error"]].drop_duplicates(TRIAL_KEY).set_index(TRIAL_KEY)["error"]
    keep = ["arm", "search", "round", *CONFIG_FIELDS]
    extra = [c for c in ("study_dir",) if c in last.columns]
    trials = last[keep + extra + ["status"]].copy()
    trials["score"] = best["_value"].reindex(trials.index).fillna(np.inf)
    trials["best_step"] = best["step"].reindex(trials.index)
    trials["error"] = errors.reindex(trials.index).fillna("")
    trials["diverged"] = grouped["diverged"].any().reindex(trials.index)
    trials["evaluations"] = rows["_value"].notna().groupby([rows["study"], rows["trial_id"]]).sum().reindex(trials.index)
    trials["last_step"] = grouped["step"].max().reindex(trials.index)
    trials["device_seconds"] = grouped["device_seconds"].max().reindex(trials.index)
    trials["wall_time_s"] = grouped["wall_time_s"].max().reindex(trials.index)
    trials = trials.reset_index()
    return trials.sort_values(["score", "study", "trial_id"], kind="stable").reset_index(drop=True)


def top_k_count(n_trials: int, fraction: float) -> int:
    """How many trials make the "best `fraction`" of n: ceil(fraction * n), at least 1.

    Ceiling, so the selected set covers at least the fraction (24 trials, 5% -> 2).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"top fraction {fraction!r} is out of range; expected 0 < fraction <= 1")
    if n_trials <= 0:
        return 0
    return max(1, math.ceil(fraction * n_trials - 1e-9))


def top_k_scores(scores, fraction: float) -> np.ndarray:
    """The best (smallest) `top_k_count(len(scores), fraction)` scores, ascending.

    +inf (failed) trials count as the worst and are selected only when the cell has
    fewer finite scores than the selection size.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    return values[: top_k_count(values.size, fraction)]


# ----------------------------------------------------------------------------- budget
def _min_position_weights(n: int, ks: np.ndarray) -> np.ndarray:
    """P(the min of k draws with replacement is the i-th smallest of n), shape (n, len(ks)).

    For ascending v_1..v_n: P(min = v_i) = ((n-i+1)/n)^k - ((n-i)/n)^k.
    """
    i = np.arange(1, n + 1, dtype=float)[:, None]
    k = ks[None, :].astype(float)
    return ((n - i + 1) / n) ** k - ((n - i) / n) ** k


def expected_best_of_k(scores, ks=None) -> pd.DataFrame:
    """Expected best (minimum) score when only k of the trials are run, k = 1..N.

    Closed form for the min of k draws with replacement from the N trial scores
    v_1 <= ... <= v_N (Lučić et al. 2018's "expected best FID under a budget"):
        E[min_k] = sum_i v_i [((N-i+1)/N)^k - ((N-i)/N)^k].
    Trials without a finite score (+inf) stay in N; since any of them makes the plain
    expectation infinite, the curve is E[min_k | at least one of the k draws has a finite
    score] and `p_all_failed` = (F/N)^k is reported beside it (F = non-finite trials).
    `median_best` is the median of the min of k draws with failures as +inf (no
    conditioning): the smallest v_i with P(min <= v_i) = 1 - ((N-i)/N)^k >= 1/2.
    Returns columns k, expected_best, p_all_failed, median_best.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    n = values.size
    if n == 0:
        return pd.DataFrame(columns=["k", "expected_best", "p_all_failed", "median_best"])
    ks = np.arange(1, n + 1) if ks is None else np.asarray(ks, dtype=int)
    finite = np.isfinite(values)
    n_failed = int((~finite).sum())
    weights = _min_position_weights(n, ks)
    numerator = np.where(finite, values, 0.0) @ weights
    p_all_failed = (n_failed / n) ** ks.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(p_all_failed < 1.0, numerator / (1.0 - p_all_failed), np.nan)
    i = np.arange(1, n + 1, dtype=float)[:, None]
    cdf = 1.0 - ((n - i) / n) ** ks[None, :].astype(float)  # P(min <= v_i), shape (n, len(ks))
    median = values[np.argmax(cdf >= 0.5 - 1e-12, axis=0)]  # cdf reaches 1 at i = n: always found
    return pd.DataFrame({"k": ks, "expected_best": expected, "p_all_failed": p_all_failed, "median_best": median})


def expected_best_band(scores, ks=None, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Bootstrap band of the expected-best curve: resample the N trials with replacement
    `n_boot` times (seeded), recompute the closed-form curve on each resample, take the
    central `level` percentile interval. Returns k, lower, upper."""
    values = np.asarray(scores, dtype=float)
    n = values.size
    if n == 0:
        return pd.DataFrame(columns=["k", "lower", "upper"])
    ks = np.arange(1, n + 1) if ks is None else np.asarray(ks, dtype=int)
    rng = np.random.default_rng(seed)
    samples = np.sort(values[rng.integers(0, n, size=(n_boot, n))], axis=1)
    finite = np.isfinite(samples)
    weights = _min_position_weights(n, ks)
    numerator = np.where(finite, samples, 0.0) @ weights
    p_all_failed = ((~finite).sum(axis=1)[:, None] / n) ** ks[None, :].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        curves = np.where(p_all_failed < 1.0, numerator / (1.0 - p_all_failed), np.nan)
    alpha = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: all-failed cells
            lower = np.nanquantile(curves, alpha, axis=0)
            upper = np.nanquantile(curves, 1.0 - alpha, axis=0)
    return pd.DataFrame({"k": ks, "lower": lower, "upper": upper})


def simulate_best_of_k(scores, k: int, n_draws: int, seed: int = 0) -> float:
    """Monte-Carlo estimate of E[min of k draws with replacement] (the definition the
    closed form computes); +inf if any draw set is all +inf. For checks, not plots."""
    values = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, size=(n_draws, k))]
    return float(draws.min(axis=1).mean())


# ----------------------------------------------------------------------------- intervals
def bootstrap_interval(statistic: Callable[..., np.ndarray], sample, n_boot: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over one sample (resampled with
    replacement, seeded). `statistic` takes an `axis` argument (np.mean, np.median, np.min)."""
    values = np.asarray(sample, dtype=float)
    if values.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    stats = statistic(values[rng.integers(0, values.size, size=(n_boot, values.size))], axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def bootstrap_difference(statistic: Callable[..., np.ndarray], sample, reference, n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(sample) - statistic(reference), both
    resampled independently with replacement (seeded); `statistic` takes `axis`. +inf
    values (failures) are allowed; a bound is +-inf when enough resamples are dominated by
    failures, and inf - inf counts as +inf (undecided)."""
    a, b = np.asarray(sample, dtype=float), np.asarray(reference, dtype=float)
    if a.size == 0 or b.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_boot, a.size))
    ib = rng.integers(0, b.size, size=(n_boot, b.size))
    with np.errstate(invalid="ignore"):
        diffs = statistic(a[ia], axis=1) - statistic(b[ib], axis=1)
    diffs = np.where(np.isnan(diffs), np.inf, diffs)
    alpha = (1.0 - level) / 2.0
    lower = np.quantile(diffs, alpha, method="lower")
    upper = np.quantile(diffs, 1.0 - alpha, method="higher")
    return float(lower), float(upper)


def finite_median(values) -> float:
    """Median counting +inf as worst (so a cell of mostly failures has median +inf)."""
    return float(np.median(np.asarray(values, dtype=float)))


# ----------------------------------------------------------------------------- seeds
def seed_variance(trials: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per setting run with several seeds: mean, std (ddof=1) and a bootstrap interval of the
    mean score over its seeds. A setting = every config field except `seed` (plus arm).
    Seeds without a finite score are counted (`failed`) but excluded from mean and std."""
    setting_fields = ["arm", *[f for f in CONFIG_FIELDS if f != "seed" and f in trials.columns]]
    if trials.empty:
        return pd.DataFrame()
    out = []
    for _, group in trials.groupby(setting_fields, sort=True, dropna=False):
        if group["seed"].nunique() < 2:
            continue
        scores = group["score"].to_numpy(float)
        finite = scores[np.isfinite(scores)]
        low, high = bootstrap_interval(np.mean, finite, n_boot=n_boot, seed=seed, level=level) if finite.size else (np.nan, np.nan)
        first = group.iloc[0]
        out.append({
            "arm": first["arm"],
            "learning_rate": first["learning_rate"], "penalty_weight": first["penalty_weight"],
            "beta1": first["beta1"], "beta2": first["beta2"], "discriminator_steps": first["discriminator_steps"],
            "seeds": int(group["seed"].nunique()), "trials": len(group), "failed": int((~np.isfinite(scores)).sum()),
            "mean": float(finite.mean()) if finite.size else np.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else np.nan,
            "min": float(finite.min()) if finite.size else np.nan,
            "max": float(finite.max()) if finite.size else np.nan,
            "mean_ci_low": low, "mean_ci_high": high,
        })
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- importance
IMPORTANCE_TREES = 32  # per arm; 32 keeps a 60-arm report fast, ~12 out-of-bag trees per trial


def hyperparameter_importance(trials: pd.DataFrame, min_trials: int = 12, seed: int = 0,
                              n_trees: int = IMPORTANCE_TREES, n_repeats: int = 3) -> pd.DataFrame:
    """Per arm: random-forest permutation importance of lr, lambda, beta1, beta2, n_dis.

    Method (Breiman 2001, out-of-bag permutation importance): a random forest of `n_trees`
    regression trees (scikit-learn RandomForestRegressor, all features per split, min 2
    samples per leaf), each fit on a bootstrap sample of the arm's trials, predicting log10(score + 1) from the
    hyperparameters (learning rate and lambda in log10). For each tree and hyperparameter,
    the column is shuffled among the tree's out-of-bag trials (`n_repeats` times) and the
    increase of the out-of-bag mean squared error is recorded; the importance is its mean
    over trees divided by the variance of the target, so 0.3 means "shuffling this
    parameter costs 30% of the variance", comparable across arms.
    `oob_r2` is the forest's out-of-bag R^2: importances of an arm with R^2 near or below 0
    mean little. Only trials with a finite score enter; arms with fewer than `min_trials`
    of them, or no varying hyperparameter, are skipped. Seeded by `seed`.
    """
    from sklearn.ensemble import RandomForestRegressor  # scikit-learn loads (~1 s) only for this table

    out = []
    for arm, group in trials.groupby("arm", sort=True):
        group = group[np.isfinite(group["score"].to_numpy(float))]
        varying = [h for h in HYPERPARAMETERS if group[h].nunique(dropna=True) > 1]
        if len(group) < min_trials or not varying:
            continue
        features = group[varying].astype(float).copy()
        for column in ("learning_rate", "penalty_weight"):
            if column in features:
                features[column] = np.log10(features[column].clip(lower=1e-12))
        # log10 of the score: a few diverged trials with FID in the hundreds would otherwise
        # dominate the squared errors. Scores <= 0 (not FIDs) are shifted to stay positive.
        raw = group["score"].to_numpy(float)
        x, y = features.to_numpy(), np.log10(raw - min(0.0, raw.min()) + 1.0)
        n = len(y)
        rng = np.random.default_rng(seed)
        forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=2, max_features=1.0,
                                       bootstrap=True, random_state=seed, n_jobs=1).fit(x, y)
        # The trees see float32 inputs; predicting through the fitted tree structure
        # (leaf index -> leaf mean) avoids scikit-learn's per-call input validation.
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        increases = np.zeros(len(varying))
        counted = 0
        oob_sum, oob_count = np.zeros(n), np.zeros(n)
        for estimator, in_bag in zip(forest.estimators_, forest.estimators_samples_):
            mask = np.ones(n, dtype=bool)
            mask[in_bag] = False
            oob = np.flatnonzero(mask)
            if oob.size < 2:
                continue
            structure = estimator.tree_
            leaf_mean = structure.value[:, 0, 0]
            x_oob = x32[oob]
            baseline_prediction = leaf_mean[structure.apply(x_oob)]
            oob_sum[oob] += baseline_prediction
            oob_count[oob] += 1
            baseline = np.mean((baseline_prediction - y[oob]) ** 2)
            permuted = np.repeat(x_oob[None], len(varying) * n_repeats, axis=0)
            for j in range(len(varying)):
                for r in range(n_repeats):
                    permuted[j * n_repeats + r, :, j] = rng.permutation(x_oob[:, j])
            flat = np.ascontiguousarray(permuted.reshape(-1, x.shape[1]))
            predictions = leaf_mean[structure.apply(flat)].reshape(len(varying), n_repeats, oob.size)
            increases += ((predictions - y[oob]) ** 2).mean(axis=2).mean(axis=1) - baseline
            counted += 1
        seen = oob_count > 0
        oob_prediction = oob_sum[seen] / oob_count[seen]
        variance = np.var(y[seen])
        r2 = 1.0 - np.mean((oob_prediction - y[seen]) ** 2) / variance if variance > 0 else np.nan
        importances = increases / max(counted, 1) / variance if variance > 0 else increases * np.nan
        row = {"arm": arm, "trials": n, "oob_r2": float(r2)}
        row.update({h: (float(importances[varying.index(h)]) if h in varying else np.nan) for h in HYPERPARAMETERS})
        out.append(row)
    table = pd.DataFrame(out, columns=["arm", "trials", "oob_r2", *HYPERPARAMETERS])
    # the arms whose forest explains the most first: their importances mean the most
    return table.sort_values(["oob_r2", "arm"], ascending=[False, True], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- reference points
REFERENCE_LABELS = {"floor": "real data (floor)", "noise": "uniform noise", "mean_image": "mean image"}


def reference_points(rows: pd.DataFrame, metric: str) -> dict[str, dict[str, float]]:
    """{dataset: {kind: value}} of the evaluator's reference points for `metric` (columns
    `<metric>_ref_<kind>`, kind in floor / noise / mean_image), the median over the rows of
    each dataset (one protocol per dataset after `split_by_protocol`: all rows agree). Empty
    for results written before the evaluator measured references."""
    out: dict[str, dict[str, float]] = {}
    for dataset, group in rows.groupby("dataset", sort=True):
        values = {}
        for kind in REFERENCE_LABELS:
            column = f"{metric}_ref_{kind}"
            if column in group.columns:
                numbers = pd.to_numeric(group[column], errors="coerce").dropna()
                if len(numbers):
                    values[kind] = float(numbers.median())
        if values:
            out[str(dataset)] = values
    return out


def learning_summary(trials: pd.DataFrame, references: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Per dataset with references: trials, how many score below uniform noise (have learned
    something), the best score, and its ratio to the real-data floor (1 = as good as real
    data; the target for the default study: <= 5)."""
    out = []
    for dataset, group in trials.groupby("dataset", sort=True):
        refs = references.get(str(dataset), {})
        if "noise" not in refs:
            continue
        scores = group["score"].to_numpy(float)
        finite = scores[np.isfinite(scores)]
        best = float(finite.min()) if finite.size else np.nan
        floor = refs.get("floor", np.nan)
        out.append({"dataset": dataset, "trials": len(group), "beat_noise": int((finite < refs["noise"]).sum()),
                    "best": best, "floor": floor, "noise": refs["noise"], "mean_image": refs.get("mean_image", np.nan),
                    "best_over_floor": best / floor if floor and floor > 0 and np.isfinite(best) else np.nan})
    return pd.DataFrame(out, columns=["dataset", "trials", "beat_noise", "best", "floor", "noise", "mean_image",
                                      "best_over_floor"])


# ----------------------------------------------------------------------------- separability
def top_k_median_statistic(fraction: float) -> Callable[..., np.ndarray]:
    """statistic(values, axis) = median of the best `top_k_count(n, fraction)` values along
    `axis` (+inf = failed counts as worst), for the bootstraps of the top-k% boxes."""
    def statistic(values, axis=-1):
        values = np.sort(np.asarray(values, dtype=float), axis=axis)
        m = top_k_count(values.shape[axis], fraction)
        return np.median(np.take(values, np.arange(m), axis=axis), axis=axis)
    return statistic


def adjacent_arm_separation(trials: pd.DataFrame, fraction: float, n_boot: int = 1000, seed: int = 0,
                            level: float = 0.95) -> pd.DataFrame:
    """Per dataset, arms ordered by their top-`fraction` median score; each arm against the
    next better one: the percentile-bootstrap interval of the difference of their top-k
    medians (trials of both resampled independently, seeded) and whether it excludes 0
    (`separable`). An interval containing 0 means the ranking of the two arms is not
    supported by the data. The best arm of a dataset has no row above it (NaN, separable NA).
    """
    statistic = top_k_median_statistic(fraction)
    out = []
    for dataset, group in trials.groupby("dataset", sort=True):
        cells = []
        for arm, arm_trials in group.groupby("arm", sort=True):
            scores = arm_trials["score"].to_numpy(float)
            cells.append((float(statistic(scores)), arm, scores))
        cells.sort(key=lambda cell: (cell[0], cell[1]))
        for rank, (median, arm, scores) in enumerate(cells):
            row = {"dataset": dataset, "arm": arm, "rank": rank + 1, "top_median": median, "vs_arm": "",
                   "diff_low": np.nan, "diff_high": np.nan, "separable": ""}
            if rank:
                above = cells[rank - 1]
                low, high = bootstrap_difference(statistic, scores, above[2], n_boot=n_boot, seed=seed, level=level)
                row.update({"vs_arm": above[1], "diff_low": low, "diff_high": high, "separable": bool(low > 0)})
            out.append(row)
    return pd.DataFrame(out, columns=["dataset", "arm", "rank", "top_median", "vs_arm", "diff_low", "diff_high",
                                      "separable"])


# ----------------------------------------------------------------------------- stability
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties; +inf ranks last). NaN when a side is constant."""
    ra = pd.Series(a).rank(method="average").to_numpy(float)
    rb = pd.Series(b).rank(method="average").to_numpy(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def arm_rank_stability(trials_a: pd.DataFrame, trials_b: pd.DataFrame, fraction: float = 0.05,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float], pd.DataFrame]:
    """How well two runs of one study (different seeds) agree on the order of the arms.

    trials_a / trials_b: trial tables (`trial_table`) of the two runs. Per arm present in both:
    the top-`fraction` median score (the paper's box statistic; failures +inf) of each run,
    with its percentile-bootstrap interval (trials resampled with replacement, seeded).
    Returns (Spearman's rho of the arms' two medians, its bootstrap interval from resampling
    the trials of every arm in both runs at once, per-arm table).
    """
    statistic = top_k_median_statistic(fraction)
    arms = sorted(set(trials_a["arm"]) & set(trials_b["arm"]))
    groups = [(trials_a.loc[trials_a["arm"] == arm, "score"].to_numpy(float),
               trials_b.loc[trials_b["arm"] == arm, "score"].to_numpy(float)) for arm in arms]
    rows = []
    for index, (arm, (a, b)) in enumerate(zip(arms, groups)):
        low_a, high_a = bootstrap_interval(statistic, a, n_boot=n_boot, seed=seed + index, level=level)
        low_b, high_b = bootstrap_interval(statistic, b, n_boot=n_boot, seed=seed + 10_000 + index, level=level)
        rows.append({"arm": arm, "trials_a": a.size, "median_a": float(statistic(a)), "low_a": low_a, "high_a": high_a,
                     "trials_b": b.size, "median_b": float(statistic(b)), "low_b": low_b, "high_b": high_b})
    table = pd.DataFrame(rows, columns=["arm", "trials_a", "median_a", "low_a", "high_a", "trials_b", "median_b",
                                        "low_b", "high_b"])
    if len(arms) < 2:
        return float("nan"), (float("nan"), float("nan")), table
    rho = _spearman(table["median_a"].to_numpy(), table["median_b"].to_numpy())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        ma = [statistic(a[rng.integers(0, a.size, a.size)]) for a, _ in groups]
        mb = [statistic(b[rng.integers(0, b.size, b.size)]) for _, b in groups]
        draws.append(_spearman(np.asarray(ma), np.asarray(mb)))
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    interval = (float(np.quantile(draws, alpha)), float(np.quantile(draws, 1.0 - alpha))) if draws.size else (np.nan, np.nan)
    return rho, interval, table
