"""The report's figures: matplotlib `Figure` objects (Agg canvas, no pyplot state) + seaborn.

Each function takes tables computed by `analysis.stats`/`analysis.tables` and a path,
writes one PNG and returns the path. Non-finite scores (failed trials) are never drawn
as points; figures that select them say how many in their labels.
"""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.stats import REFERENCE_LABELS, metric_label, top_k_count

DPI = 90
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
]


def plain(text) -> str:
    """Data strings shown as literal text: matplotlib would read "$...$" as mathtext."""
    return str(text).replace("$", r"\$")


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


REFERENCE_STYLE = {"floor": ("#2e7d32", "--"), "noise": ("#c62828", "--"), "mean_image": ("#6a1b9a", ":")}


def reference_lines(ax, references: dict[str, float] | None, horizontal: bool = False) -> None:
    """Labelled lines at the evaluator's reference points (real-data floor, uniform noise,
    mean image) on a score axis: y (or x when `horizontal`).

    The axis is widened down to the floor, and up to a line only when that line lies within
    half the data's span above the data (so scores far better than noise are not squashed
    against a line at noise level); lines further up are listed in a corner note instead.
    """
    if not references:
        return
    low, high = ax.get_xlim() if horizontal else ax.get_ylim()
    bottom = min([low] + [v for k, v in references.items() if k == "floor" and np.isfinite(v)])
    reach = high + 0.5 * (high - bottom)
    off_scale = []
    for kind, value in references.items():
        if not np.isfinite(value):
            continue
        label = f"{REFERENCE_LABELS.get(kind, kind)} {value:.4g}"
        if value > reach:
            off_scale.append(label)
            continue
        colour, style = REFERENCE_STYLE.get(kind, ("#555", "--"))
        line = ax.axvline if horizontal else ax.axhline
        line(value, color=colour, ls=style, lw=1.1, zorder=1)
        if horizontal:
            ax.text(value, 1.0, " " + label, color=colour, fontsize=7, rotation=90, va="top", ha="right",
                    transform=ax.get_xaxis_transform())
        else:
            ax.text(1.0, value, label + " ", color=colour, fontsize=7, va="bottom", ha="right",
                    transform=ax.get_yaxis_transform())
        low, high = min(low, value), max(high, value)
    pad = 0.04 * (high - low) if high > low else 1.0
    if horizontal:
        ax.set_xlim(low - pad if ax.get_xscale() != "log" else low * 0.9, high + pad)
    else:
        current = ax.get_ylim()
        ax.set_ylim(min(current[0], low - pad) if ax.get_yscale() != "log" else low * 0.9, max(current[1], high + pad))
    if off_scale:
        ax.text(0.01, 0.99, "above the plot: " + "; ".join(off_scale), transform=ax.transAxes, fontsize=7, va="top",
                ha="left", color="#6a1b9a")


def _save(figure: Figure, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def top_k_figure(trials: pd.DataFrame, axis: str, fraction: float, metric: str, path: pathlib.Path,
                 references: dict[str, dict[str, float]] | None = None) -> pathlib.Path:
    """Box + strip of the best `fraction` of each cell's trial scores; one panel per dataset.

    A cell is one value of `axis` within a dataset, pooling all trials with that value.
    Tick labels give the cell's trial count n and the selection size m.
    """
    # Datasets are separate panels; the dataset axis itself is drawn in one panel.
    trials = trials.assign(_panel="all datasets") if axis == "dataset" else trials.assign(_panel=trials["dataset"])
    datasets = sorted(trials["_panel"].unique())
    values = sorted(trials[axis].unique())
    figure = _new_figure(max(4.5, 1.0 + 0.9 * len(values)) * len(datasets), 3.6)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        subset = trials[trials["_panel"] == dataset]
        groups, labels = [], []
        for value in values:
            scores = np.sort(subset.loc[subset[axis] == value, "score"].to_numpy(float))
            if scores.size == 0:
                continue
            m = top_k_count(scores.size, fraction)
            top = scores[:m]
            failed = int((~np.isfinite(top)).sum())
            labels.append(f"{plain(value)}\nn={scores.size}, top {m}" + (f"\n({failed} no score)" if failed else ""))
            groups.append(top[np.isfinite(top)])
        _box_and_strip(ax, groups, labels, horizontal=False)
        if axis != "dataset":  # the dataset panel mixes datasets: no one set of references
            reference_lines(ax, (references or {}).get(str(dataset)))
        ax.set_title(f"{plain(dataset)}: best {fraction:.0%} per {axis}")
        ax.set_ylabel(metric_label(metric, short=True) + " (lower is better)")
        ax.tick_params(axis="x", labelsize=8)
    return _save(figure, path)


def _box_and_strip(ax, groups: list[np.ndarray], labels: list[str], horizontal: bool, seed: int = 0) -> None:
    """Boxes (quartiles, whiskers at 1.5 IQR, no fliers) with every point jittered on top
    (seeded jitter, so a rebuilt figure is identical). Empty groups keep their label."""
    rng = np.random.default_rng(seed)
    positions = np.arange(len(groups))
    filled = [i for i, g in enumerate(groups) if g.size]
    if filled:
        ax.boxplot([groups[i] for i in filled], positions=positions[filled], widths=0.6, patch_artist=True,
                   showfliers=False, orientation="horizontal" if horizontal else "vertical",
                   boxprops={"facecolor": "#cfe0f3", "edgecolor": "#555"}, medianprops={"color": "#1f3b73"},
                   whiskerprops={"color": "#555"}, capprops={"color": "#555"}, manage_ticks=False)
    for i in filled:
        jitter = positions[i] + rng.uniform(-0.18, 0.18, groups[i].size)
        x, y = (groups[i], jitter) if horizontal else (jitter, groups[i])
        ax.scatter(x, y, s=9, color="#1f3b73", zorder=3, linewidths=0)
    if horizontal:
        ax.set_yticks(positions, labels)
        ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top
    else:
        ax.set_xticks(positions, labels)
        ax.set_xlim(-0.5, len(groups) - 0.5)


def top_k_by_arm_figure(trials: pd.DataFrame, fraction: float, metric: str, path: pathlib.Path,
                        references: dict[str, dict[str, float]] | None = None) -> pathlib.Path:
    """Horizontal box + strip of each arm's best `fraction` of trial scores, arms sorted by
    the median of that selection; one panel per dataset (stacked)."""
    datasets = sorted(trials["dataset"].unique())
    heights = [max(1.5, 0.28 * trials.loc[trials["dataset"] == d, "arm"].nunique() + 0.8) for d in datasets]
    figure = _new_figure(10, sum(heights))
    axes = figure.subplots(len(datasets), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, dataset in zip(axes, datasets):
        cells = []
        for arm, group in trials[trials["dataset"] == dataset].groupby("arm", sort=True):
            scores = np.sort(group["score"].to_numpy(float))
            top = scores[: top_k_count(scores.size, fraction)]
            failed = int((~np.isfinite(top)).sum())
            label = plain(f"{arm} (n={scores.size}, top {top.size}" + (f", {failed} no score)" if failed else ")"))
            cells.append((float(np.median(top)), label, top[np.isfinite(top)]))
        cells.sort(key=lambda cell: (cell[0], cell[1]))
        _box_and_strip(ax, [c[2] for c in cells], [c[1] for c in cells], horizontal=True)
        reference_lines(ax, (references or {}).get(str(dataset)), horizontal=True)
        ax.set_title(f"{plain(dataset)}: best {fraction:.0%} of each arm's trials")
        ax.set_xlabel(metric_label(metric, short=True) + " (lower is better)")
        ax.tick_params(axis="y", labelsize=7)
    return _save(figure, path)


def budget_figure(curves: pd.DataFrame, metric: str, path: pathlib.Path, max_arms: int = 10,
                  references: dict[str, dict[str, float]] | None = None) -> pathlib.Path:
    """Expected best score vs number of trials k (log x) with its bootstrap band, per arm;
    one panel per dataset, at most `max_arms` arms per panel (best at k = min(5, N))."""
    datasets = sorted(curves["dataset"].unique())
    figure = _new_figure(6.5 * len(datasets), 4.2)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        subset = curves[curves["dataset"] == dataset]
        subset = subset[subset.groupby("arm")["expected_best"].transform(lambda v: v.notna().any())]
        arms = _best_arms(subset, max_arms)
        if not arms:
            ax.text(0.5, 0.5, "no arm has a scored trial", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(plain(dataset))
            continue
        for colour, arm in zip(PALETTE * 4, arms):
            curve = subset[subset["arm"] == arm].sort_values("k")
            ax.plot(curve["k"], curve["expected_best"], color=colour, label=plain(arm), lw=1.5)
            ax.fill_between(curve["k"], curve["lower"], curve["upper"], color=colour, alpha=0.15, lw=0)
        ax.set_xscale("log")
        reference_lines(ax, (references or {}).get(str(dataset)))
        ax.set_xlabel("trials run (k)")
        ax.set_ylabel(f"expected best {metric_label(metric, short=True)}")
        shown = "" if len(arms) == subset["arm"].nunique() else f" ({len(arms)} of {subset['arm'].nunique()} arms)"
        ax.set_title(f"{plain(dataset)}{shown}")
        ax.legend(fontsize=6, loc="upper right", frameon=False)
    return _save(figure, path)


def _best_arms(curves: pd.DataFrame, max_arms: int) -> list[str]:
    at = curves[curves["k"] == curves.groupby("arm")["k"].transform(lambda k: min(5, k.max()))]
    ranked = at.sort_values("expected_best", na_position="last")["arm"].tolist()
    return ranked[:max_arms]


def ablation_heatmap(table: pd.DataFrame, path: pathlib.Path) -> pathlib.Path:
    """Heat-map of the median-score difference of each switch vs the default (rows: switch,
    columns: ablation context)."""
    pivot = table.pivot_table(index="switch", columns="context", values="median_diff", aggfunc="first")
    pivot = pivot.reindex(list(dict.fromkeys(table["switch"])))  # default first, as in the table
    figure = _new_figure(2.5 + 2.2 * pivot.shape[1], 1.2 + 0.4 * pivot.shape[0])
    ax = figure.subplots()
    finite = pivot.where(np.isfinite(pivot))
    finite.columns = [plain(c) for c in finite.columns]
    bound = float(np.nanmax(np.abs(finite.to_numpy()))) if finite.notna().any().any() else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seaborn 0.13 uses a matplotlib-deprecated colormap call
        sns.heatmap(finite, annot=True, fmt=".2f", cmap="RdBu_r", center=0, vmin=-bound, vmax=bound, ax=ax,
                    cbar_kws={"label": "median score − default (lower is better)"})
    ax.set_xlabel("")
    ax.set_ylabel("switch")
    ax.tick_params(axis="x", labelsize=7)
    return _save(figure, path)


def sensitivity_figure(trials: pd.DataFrame, parameters: list[str], metric: str, title: str,
                       path: pathlib.Path, max_arms: int = 10, references: dict[str, float] | None = None) -> pathlib.Path:
    """Score vs each hyperparameter (log x for lr and lambda): points per trial coloured by
    arm and, where a parameter takes at most 6 values, a line through each arm's medians.

    The y range stops at 1.5 x the 90th percentile of the shown scores, so that a few
    diverged trials (FID in the hundreds) do not flatten the rest; each panel says how
    many points lie above. On a log x axis, trials with the parameter at 0 (lambda of an
    unpenalized arm) cannot be drawn; the panel says how many.
    """
    finite = trials[np.isfinite(trials["score"].to_numpy(float))]
    best = finite.groupby("arm")["score"].min().sort_values()
    arms = best.index[:max_arms].tolist()
    shown = finite[finite["arm"].isin(arms)]
    low = float(shown["score"].min()) if len(shown) else 0.0
    high = float(np.quantile(shown["score"], 0.9)) if len(shown) else 1.0
    y_max = low + 1.5 * (high - low) if high > low else high + 1.0
    figure = _new_figure(3.2 * len(parameters) + 2.8, 3.4)
    axes = figure.subplots(1, len(parameters), squeeze=False)[0]
    for ax, parameter in zip(axes, parameters):
        log_x = parameter in ("learning_rate", "penalty_weight") and (shown[parameter] > 0).any()
        hidden_zero = int((shown[parameter] <= 0).sum()) if log_x else 0
        for colour, arm in zip(PALETTE * 4, arms):
            points = shown[(shown["arm"] == arm) & shown[parameter].notna()]
            if log_x:
                points = points[points[parameter] > 0]
            if points.empty:
                continue
            ax.scatter(points[parameter], points["score"], s=9, alpha=0.45, color=colour, label=plain(arm))
            if points[parameter].nunique() <= 6:
                medians = points.groupby(parameter)["score"].median()
                ax.plot(medians.index, medians.values, color=colour, lw=1.2)
        if log_x:
            ax.set_xscale("log")
        above = int((shown[parameter].notna() & (shown["score"] > y_max)).sum())
        ax.set_ylim(low - 0.05 * (y_max - low), y_max)
        reference_lines(ax, references)
        notes = [f"{above} above" if above else "", f"{hidden_zero} at 0 not shown" if hidden_zero else ""]
        note = ", ".join(n for n in notes if n)
        if note:
            ax.text(0.98, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#a00")
        ax.set_xlabel(parameter)
        ax.set_ylabel(metric_label(metric, short=True))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize=6, frameon=False)
    figure.suptitle(plain(title), fontsize=10)
    return _save(figure, path)


def rounds_figure(per_round: pd.DataFrame, metric: str, path: pathlib.Path,
                  references: dict[str, float] | None = None) -> pathlib.Path:
    """Bayesian studies: best score within each round (markers) and best so far (line), per arm;
    `references` (one dataset's reference points) drawn when the rounds are of one dataset."""
    figure = _new_figure(7.5, 3.8)
    ax = figure.subplots()
    for colour, (arm, group) in zip(PALETTE * 4, per_round.groupby("arm", sort=True)):
        group = group.sort_values("round")
        ax.plot(group["round"], group["round_best"], "o", color=colour, ms=4, alpha=0.7)
        ax.plot(group["round"], group["best_so_far"], "-", color=colour, label=plain(arm))
    reference_lines(ax, references)
    ax.set_title("markers: best trial of the round; line: best so far", fontsize=9)
    ax.set_xlabel("Bayesian round")
    ax.set_ylabel(f"best {metric_label(metric, short=True)}")
    ax.legend(fontsize=7, frameon=False)
    return _save(figure, path)


def training_curves_figure(rows: pd.DataFrame, trials: pd.DataFrame, metric: str, path: pathlib.Path,
                           references: dict[str, float] | None = None) -> pathlib.Path:
    """Score, D loss and G loss vs step (three panels) for the given trials."""
    figure = _new_figure(12, 4.6)
    score_ax, d_ax, g_ax = figure.subplots(1, 3)
    keyed = rows.set_index(["study", "trial_id"]).sort_index()
    for colour, trial in zip(PALETTE * 4, trials.itertuples()):
        curve = keyed.loc[[(trial.study, trial.trial_id)]].sort_values("step")
        label = plain(f"{trial.arm} [{trial.trial_id[:6]}]")
        score_ax.plot(curve["step"], curve[metric], "-o", ms=3, color=colour, label=label)
        d_ax.plot(curve["step"], curve["d_loss"], color=colour)
        g_ax.plot(curve["step"], curve["g_loss"], color=colour)
    reference_lines(score_ax, references)
    score_ax.set_ylabel(metric_label(metric, short=True))
    d_ax.set_ylabel("discriminator loss")
    g_ax.set_ylabel("generator loss")
    for ax in (score_ax, d_ax, g_ax):
        ax.set_xlabel("step (D updates)")
    figure.legend(*score_ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    return _save(figure, path)
