"""The report's tables: builders (trials -> DataFrame) and writers (CSV, LaTeX, HTML).

LaTeX is written by hand (booktabs) so that no jinja2 is needed.
"""
from __future__ import annotations

import html
import math
import pathlib

import numpy as np
import pandas as pd

from analysis import stats
from analysis.load import ABLATION_FIELDS, CONFIG_FIELDS, HYPERPARAMETERS, TRICK_DEFAULTS

# ----------------------------------------------------------------------------- writers
_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                   "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def format_value(value) -> str:
    """Numbers: 4 significant digits (scientific below 1e-3); inf as 'inf'; NaN/None as ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def to_latex_booktabs(table: pd.DataFrame, caption: str = "") -> str:
    """A booktabs tabular of `table` (all cells formatted with `format_value`, escaped)."""
    spec = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines += [r"\begin{tabular}{" + spec + "}", r"\toprule",
              " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\", r"\midrule"]
    for row in table.itertuples(index=False):
        lines.append(" & ".join(latex_escape(format_value(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_table(table: pd.DataFrame, directory: pathlib.Path, name: str, caption: str = "") -> dict[str, pathlib.Path]:
    """Writes `name`.csv and `name`.tex under `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = directory / f"{name}.csv", directory / f"{name}.tex"
    table.to_csv(csv_path, index=False)
    tex_path.write_text(to_latex_booktabs(table, caption))
    return {"csv": csv_path, "tex": tex_path}


HTML_CELL_CHARS = 300  # longer cells (tracebacks in `error`) are cut in HTML; the CSV keeps them


def _cell(value) -> str:
    text = format_value(value)
    return html.escape(text if len(text) <= HTML_CELL_CHARS else text[:HTML_CELL_CHARS] + " …")


def html_table(table: pd.DataFrame, max_rows: int | None = None, css_class: str = "data") -> str:
    """An HTML table with every cell escaped (and cut at HTML_CELL_CHARS); at most
    `max_rows` rows (a note says so)."""
    shown = table if max_rows is None or len(table) <= max_rows else table.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) for c in shown.columns]
    for row in shown.itertuples(index=False):
        cells = "".join(f'<td class="num">{_cell(v)}</td>' if is_num else f"<td>{_cell(v)}</td>"
                        for v, is_num in zip(row, numeric))
        body.append(f"<tr>{cells}</tr>")
    note = ""
    if len(shown) < len(table):
        note = f'<p class="note">showing the first {len(shown)} of {len(table)} rows; the CSV has all.</p>'
    return f'<div class="scroll"><table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{note}'


# ----------------------------------------------------------------------------- builders
def top_k_table(trials: pd.DataFrame, axis: str, fraction: float) -> pd.DataFrame:
    """Per (dataset, axis value): trials n, failed (no finite score), selection size m and
    the median / best / worst of the best-m scores (the top-k% box of the figure)."""
    out = []
    for (dataset, value), group in trials.groupby(["dataset", axis], sort=True):
        scores = group["score"].to_numpy(float)
        top = stats.top_k_scores(scores, fraction)
        out.append({"dataset": dataset, axis: value, "trials": scores.size,
                    "no_score": int((~np.isfinite(scores)).sum()), "top_m": top.size,
                    "top_best": float(top.min()), "top_median": float(np.median(top)), "top_worst": float(top.max())})
    return pd.DataFrame(out)


def arms_table(trials: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per arm: trials, completed / diverged / failed / running counts, best, median, top-k median."""
    out = []
    for arm, group in trials.groupby("arm", sort=True):
        scores = group["score"].to_numpy(float)
        top = stats.top_k_scores(scores, fraction)
        counts = group["status"].value_counts()
        out.append({"arm": arm, "dataset": group["dataset"].iloc[0], "trials": len(group),
                    "completed": int(counts.get("completed", 0)), "diverged": int(counts.get("diverged", 0)),
                    "failed": int(counts.get("failed", 0)), "running": int(counts.get("running", 0)),
                    "best": float(scores.min()), "median": stats.finite_median(scores),
                    "top_median": float(np.median(top))})
    return pd.DataFrame(out).sort_values(["dataset", "best"], kind="stable").reset_index(drop=True)


def budget_ks(n_trials: int, max_points: int = 80) -> np.ndarray:
    """k = 1..N, thinned to about `max_points` log-spaced values (always with 1, 5, 10, N) when
    N is large, so that a 5,000-trial arm costs no N x N matrices."""
    if n_trials <= max_points:
        return np.arange(1, n_trials + 1)
    thinned = np.round(np.geomspace(1, n_trials, max_points)).astype(int)
    return np.unique(np.concatenate([thinned, [1, 5, 10, n_trials]]))


def budget_curves(trials: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per arm, k = 1..N (log-thinned above 80 trials): closed-form expected best score,
    bootstrap band, P(all k failed) and the median best."""
    frames = []
    for arm, group in trials.groupby("arm", sort=True):
        scores = group["score"].to_numpy(float)
        ks = budget_ks(scores.size)
        curve = stats.expected_best_of_k(scores, ks)
        band = stats.expected_best_band(scores, ks, n_boot=n_boot, seed=seed)
        curve = curve.merge(band, on="k")
        curve.insert(0, "trials", scores.size)
        curve.insert(0, "dataset", group["dataset"].iloc[0])
        curve.insert(0, "arm", arm)
        frames.append(curve)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ablation_switch(row) -> str:
    """The paper's name of a trial's ResNet ablation switches relative to the default."""
    active = []
    if str(row["resnet_d_shortcut"]) == "identity":
        active.append("RES")
    if _true(row["resnet_d_cin"]):
        active.append("CIN")
    if _true(row["resnet_d_opt"]):
        active.append("OPT")
    if str(row["resnet_d_pooling"]) == "sum":
        active.append("SUM")
    if _true(row["resnet_tanh"]):
        active.append("TAN")
    epsilon = row["generator_bn_epsilon"]
    if epsilon is not None and not (isinstance(epsilon, float) and math.isnan(epsilon)) and float(epsilon) != 1e-5:
        active.append("EPS")
    if len(active) == 6:
        return "ALL"
    return " ".join(active) if active else "default"


def _true(value) -> bool:
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def ablation_table(trials: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per ablation context (ResNet arms of one dataset/architecture/loss/norm/penalty with
    several switch settings including the default) and switch: trials, best and median
    score, their differences to the default and 95% percentile-bootstrap intervals of the
    differences (switch and default trials resampled independently; seeded)."""
    resnet = trials[trials["architecture"].astype(str).str.startswith("resnet")]
    if resnet.empty or not all(f in resnet.columns for f in ABLATION_FIELDS):
        return pd.DataFrame()
    resnet = resnet.assign(switch=resnet.apply(ablation_switch, axis=1))
    out = []
    context_fields = ["dataset", "architecture", "loss", "normalization", "penalty"]
    for context, group in resnet.groupby(context_fields, sort=True):
        switches = group["switch"].unique()
        if len(switches) < 2 or "default" not in switches:
            continue
        reference = group.loc[group["switch"] == "default", "score"].to_numpy(float)
        ref_best, ref_median = float(reference.min()), stats.finite_median(reference)
        order = ["default", *sorted(s for s in switches if s != "default")]
        for switch in order:
            scores = group.loc[group["switch"] == switch, "score"].to_numpy(float)
            best, median = float(scores.min()), stats.finite_median(scores)
            row = {"context": "/".join(map(str, context)), "switch": switch, "trials": scores.size,
                   "no_score": int((~np.isfinite(scores)).sum()), "best": best, "median": median,
                   "best_diff": best - ref_best, "median_diff": median - ref_median}
            if switch == "default":
                row.update(best_diff_low=0.0, best_diff_high=0.0, median_diff_low=0.0, median_diff_high=0.0)
            else:
                row["best_diff_low"], row["best_diff_high"] = stats.bootstrap_difference(np.min, scores, reference, n_boot, seed)
                row["median_diff_low"], row["median_diff_high"] = stats.bootstrap_difference(np.median, scores, reference, n_boot, seed)
            out.append(row)
    return pd.DataFrame(out)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def trick_label(row) -> str:
    """"baseline", or a trial's training tricks at non-default values as `field=value`
    joined by "+" (as search_spaces.tricks.trick_label labels arms). A missing column or
    value (results written before the tricks existed) is the default."""
    parts = []
    for field, default in TRICK_DEFAULTS.items():
        value = row[field] if field in row.index else None
        if _missing(value) or (field == "discriminator_sgd_momentum" and str(row.get("discriminator_optimizer")) != "sgd"):
            continue
        if isinstance(default, float) or (default is None and isinstance(value, (int, float, np.number))):
            if default is not None and math.isclose(float(value), default):
                continue
            parts.append(f"{field}={float(value):g}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if int(value) != default:
                parts.append(f"{field}={int(value)}")
        elif str(value) != str(default):
            parts.append(f"{field}={value}")
    return "+".join(parts) if parts else "baseline"


TRICK_CONTEXT = ("dataset", "architecture", "loss", "normalization", "penalty")


def trick_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of every context (dataset/architecture/loss/normalization/penalty) that has
    baseline trials and trials of at least one trick, with columns `context` and `trick`."""
    if trials.empty:
        return trials.assign(context=pd.Series(dtype=str), trick=pd.Series(dtype=str))
    labelled = trials.assign(trick=trials.apply(trick_label, axis=1),
                             context=trials[list(TRICK_CONTEXT)].astype(str).agg("/".join, axis=1))
    keep = labelled.groupby("context")["trick"].transform(lambda t: (t == "baseline").any() and t.nunique() >= 2)
    return labelled[keep.astype(bool)]


def tricks_table(trials: pd.DataFrame, fraction: float, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per trick context and trick: trials, failures, the best-`fraction` selection (m,
    median, best) and the expected best of k = min(5, N) trials (budget), with the
    differences to the context's baseline and a 95% percentile-bootstrap interval of the
    best-`fraction` median difference (trick and baseline trials resampled independently)."""
    labelled = trick_trials(trials)
    statistic = stats.top_k_median_statistic(fraction)
    out = []
    for context, group in labelled.groupby("context", sort=True):
        reference = group.loc[group["trick"] == "baseline", "score"].to_numpy(float)
        ref_top = float(statistic(reference))
        ref_k5 = _expected_best_at(reference, 5)
        order = ["baseline", *sorted(t for t in group["trick"].unique() if t != "baseline")]
        for trick in order:
            scores = group.loc[group["trick"] == trick, "score"].to_numpy(float)
            top = stats.top_k_scores(scores, fraction)
            row = {"context": context, "trick": trick, "trials": scores.size,
                   "no_score": int((~np.isfinite(scores)).sum()), "top_m": top.size,
                   "top_median": float(np.median(top)), "best": float(scores.min()),
                   "expected_best_k5": _expected_best_at(scores, 5)}
            row["top_median_diff"] = row["top_median"] - ref_top
            row["expected_best_k5_diff"] = row["expected_best_k5"] - ref_k5
            if trick == "baseline":
                row["diff_low"], row["diff_high"] = 0.0, 0.0
            else:
                row["diff_low"], row["diff_high"] = stats.bootstrap_difference(statistic, scores, reference, n_boot, seed)
            out.append(row)
    return pd.DataFrame(out)


def _expected_best_at(scores: np.ndarray, k: int) -> float:
    curve = stats.expected_best_of_k(scores, [min(k, scores.size)])
    return float(curve["expected_best"].iloc[0]) if len(curve) else float("nan")


def rounds_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Bayesian trials: per (arm, round) the trials, best score of the round and best so far."""
    bayes = trials[trials["search"] == "bayesian"]
    if bayes.empty:
        return pd.DataFrame()
    per_round = (bayes.groupby(["arm", "round"], sort=True)["score"]
                 .agg(trials="size", round_best="min").reset_index())
    per_round["best_so_far"] = per_round.groupby("arm")["round_best"].cummin()
    return per_round


def sensitivity_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm, hyperparameter and value: trials, median and best score (failures count as
    +inf). Grid values are kept as they are; an arm with more than 8 distinct values of a
    parameter (Bayesian / random search) has them binned into 5 quantile bins, of log10
    for lr and lambda."""
    frames = []
    for parameter in HYPERPARAMETERS:
        distinct = trials.groupby("arm")[parameter].nunique()
        varying = trials[trials["arm"].isin(distinct.index[distinct >= 2])]
        if varying.empty:
            continue
        keys = varying[parameter].map(format_value)
        for arm in distinct.index[distinct > 8]:
            rows = varying["arm"] == arm
            values = varying.loc[rows, parameter]
            source = np.log10(values.clip(lower=1e-12)) if parameter in ("learning_rate", "penalty_weight") else values
            keys.loc[rows] = pd.qcut(source, q=5, duplicates="drop").astype(str)
            if parameter in ("learning_rate", "penalty_weight"):
                keys.loc[rows] = "log10 " + keys.loc[rows]
        summary = (varying.assign(value=keys).groupby(["arm", "value"], sort=True)["score"]
                   .agg(trials="size", median="median", best="min").reset_index())
        summary.insert(1, "parameter", parameter)
        frames.append(summary)
    if not frames:
        return pd.DataFrame(columns=["arm", "parameter", "value", "trials", "median", "best"])
    return pd.concat(frames, ignore_index=True)


def varying_config_columns(trials: pd.DataFrame) -> list[str]:
    """Config fields that take more than one value among the trials (for compact tables)."""

    return [c for c in CONFIG_FIELDS if c in trials.columns and trials[c].astype(str).nunique() > 1]

