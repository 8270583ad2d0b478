"""`python -m analysis.report STUDY_DIR [STUDY_DIR ...] [--out DIR] [--top 0.05]`

Builds a self-contained report folder (index.html + figures/*.png + tables/*.csv|tex +
samples/*.png) that opens from disk without a server. `build_report` is the library
entry point the study runner calls. Every string taken from the data is HTML-escaped.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import html
import json
import pathlib
import shutil
import sys

import numpy as np
import pandas as pd

from analysis import figures, stats, tables
from analysis.load import AXES, HYPERPARAMETERS, PROTOCOL_COLUMNS, StudyData, StudyDataError, load_studies
from study.storage.location import StorageError, at, local_cache
from study.storage.paths import check_output_dir

GENERATOR_MARK = '<meta name="generator" content="analysis.report">'
OWNED_SUBDIRS = ("figures", "tables", "samples")


@dataclasses.dataclass
class Section:
    anchor: str
    title: str
    body: str


@dataclasses.dataclass
class Context:
    """What every section needs: the rows, the trials, the metric and the output folder."""

    data: StudyData
    rows: pd.DataFrame  # score rows of other FID protocols removed
    trials: pd.DataFrame
    metric: str
    top: float
    out: pathlib.Path
    n_boot: int
    seed: int
    references: dict = dataclasses.field(default_factory=dict)  # {dataset: {kind: value}} of `metric`

    def figure_path(self, name: str) -> pathlib.Path:
        return self.out / "figures" / f"{name}.png"

    def table(self, frame: pd.DataFrame, name: str, caption: str, max_rows: int | None = 60) -> str:
        """Writes CSV + LaTeX of `frame` and returns its HTML with links to both files."""
        paths = tables.write_table(frame, self.out / "tables", name, caption)
        links = " ".join(f'<a href="tables/{html.escape(p.name)}">{kind.upper()}</a>' for kind, p in paths.items())
        return f'<p class="caption">{html.escape(caption)} [{links}]</p>' + tables.html_table(frame, max_rows)


def _img(ctx: Context, path: pathlib.Path, alt: str) -> str:
    relative = path.relative_to(ctx.out).as_posix()
    return f'<figure><img src="{html.escape(relative)}" alt="{html.escape(alt)}"></figure>'


def _not_applicable(why: str) -> str:
    return f'<p class="na">not applicable: {html.escape(why)}</p>'


def _esc(value) -> str:
    return html.escape(tables.format_value(value))


# ----------------------------------------------------------------------------- sections
def _learning_sentences(ctx: Context) -> str:
    """Per dataset: how many trials beat uniform noise and the best trial's ratio to the floor."""
    summary = stats.learning_summary(ctx.trials, ctx.references)
    if summary.empty:
        return ('<p class="note">No reference points in these results (written before the evaluator measured '
                "them): nothing says whether a score means learning.</p>")
    parts = []
    for r in summary.itertuples():
        ratio = f"{r.best_over_floor:.3g}×" if np.isfinite(r.best_over_floor) else "n/a"
        parts.append(f"<p><b>{html.escape(str(r.dataset))}</b>: {r.beat_noise} of {r.trials} trials beat uniform noise "
                     f"({_esc(r.noise)}); the best trial scores {_esc(r.best)}, {ratio} the real-data floor "
                     f"({_esc(r.floor)}; the mean image scores {_esc(r.mean_image)}).</p>")
    return "".join(parts)


def section_summary(ctx: Context, per_dataset: int = 5) -> Section:
    """The best trials of each dataset with their hyperparameters: the first thing asked."""
    finite = ctx.trials[np.isfinite(ctx.trials["score"].to_numpy(float))]
    intro = _learning_sentences(ctx)
    if finite.empty:
        return Section("summary", "Summary", intro + _not_applicable("no trial has a finite score"))
    best = (finite.sort_values(["dataset", "score", "study", "trial_id"])
            .groupby("dataset", sort=True).head(per_dataset))
    best = _with_best_step_metrics(ctx, best)
    columns = ["dataset", "score", *BEST_STEP_METRICS, "arm", *HYPERPARAMETERS, "seed", "best_step", "study",
               "trial_id"]
    columns = [c for c in columns if c in best.columns and (c not in BEST_STEP_METRICS or best[c].notna().any())]
    return Section("summary", "Summary", intro + ctx.table(best[columns], "best_trials",
                                                            f"The {per_dataset} best trials per dataset ({ctx.metric})"))


# Label-based and two-sample scores shown beside the best trials' scores, taken at the best step
# (columns no row has are left out): classes covered, within-class diversity (m-IS), the 1-NN
# two-sample accuracy (0.5 = indistinguishable from real) and, for conditional trials, GAN-test/train.
BEST_STEP_METRICS = ("classes_covered_domain", "m_is_domain", "one_nn_accuracy_domain", "gan_test_domain",
                     "gan_train_domain")


def _with_best_step_metrics(ctx: Context, trials: pd.DataFrame, columns=BEST_STEP_METRICS) -> pd.DataFrame:
    """`trials` with the given row metrics taken at each trial's best step."""
    present = [c for c in columns if c in ctx.rows.columns]
    if not present:
        return trials
    at = ctx.rows[["study", "trial_id", "step", *present]].rename(columns={"step": "best_step"})
    at = at.drop_duplicates(["study", "trial_id", "best_step"], keep="last")
    return trials.merge(at, on=["study", "trial_id", "best_step"], how="left")


def section_top_k(ctx: Context) -> Section:
    trials = ctx.trials
    parts = [f"<p>Each box shows the best {ctx.top:.0%} (ceil, at least 1) of a cell's trials, scored by their "
             f"minimum {html.escape(stats.metric_label(ctx.metric))} over evaluations (Kurach et al. 2019, "
             "Fig. 1–4). A cell pools every trial with that value within a dataset; n counts all its trials, "
             "failed and diverged ones included (no score = worst).</p>"]
    axes = [a for a in AXES if trials[a].nunique() >= 2]
    for axis in axes:
        path = figures.top_k_figure(trials, axis, ctx.top, ctx.metric, ctx.figure_path(f"top_{axis}"), ctx.references)
        note = ""
        if axis == "dataset":
            note = "<p class=\"note\">Scores of different datasets are not comparable with each other.</p>"
        parts.append(f"<h3>by {html.escape(axis)}</h3>{note}" + _img(ctx, path, f"top {ctx.top:.0%} by {axis}")
                     + ctx.table(tables.top_k_table(trials, axis, ctx.top), f"top_{axis}",
                                 f"Best {ctx.top:.0%} per {axis} and dataset"))
    if not axes:
        parts.append(_not_applicable("every trial has the same loss, normalization, penalty, architecture and dataset"))
    arm_path = figures.top_k_by_arm_figure(trials, ctx.top, ctx.metric, ctx.figure_path("top_arm"), ctx.references)
    separation = stats.adjacent_arm_separation(trials, ctx.top, n_boot=max(200, ctx.n_boot), seed=ctx.seed)
    arms = tables.arms_table(trials, ctx.top).merge(
        separation[["dataset", "arm", "rank", "vs_arm", "diff_low", "diff_high", "separable"]], on=["dataset", "arm"],
        how="left").sort_values(["dataset", "rank"], kind="stable")
    ties = separation[separation["separable"].astype(object).eq(False)]
    tie_text = (f"<p class=\"note\"><b>{len(ties)} of {int(separation['vs_arm'].ne('').sum())}</b> adjacent arm "
                "differences are not separated by the bootstrap (separable = False: the 95% interval of the "
                "difference of best-k medians contains 0, so their order is not supported): "
                + html.escape("; ".join(f"{r.arm} ~ {r.vs_arm}" for r in ties.itertuples())) + "</p>") if len(ties) else ""
    parts.append("<h3>per arm</h3>" + _img(ctx, arm_path, f"top {ctx.top:.0%} per arm") + tie_text
                 + ctx.table(arms, "arms", f"Arms by best-{ctx.top:.0%} median: trial outcomes, best, median and "
                             f"best-{ctx.top:.0%} median score; diff_low/diff_high: 95% bootstrap interval of this "
                             "arm's best-k median minus that of vs_arm (the next better arm)"))
    return Section("top", f"Top {ctx.top:.0%} per cell", "".join(parts))


def section_budget(ctx: Context) -> Section:
    curves = tables.budget_curves(ctx.trials, n_boot=ctx.n_boot, seed=ctx.seed)
    if curves.empty or ctx.trials["arm"].nunique() == 0:
        return Section("budget", "Score vs budget", _not_applicable("no trials"))
    path = figures.budget_figure(curves, ctx.metric, ctx.figure_path("budget"), references=ctx.references)
    intro = ("<p>Expected best score when only k of an arm's N trials are run (k draws with replacement; "
             "Lučić et al. 2018), closed form E[min<sub>k</sub>] = Σ<sub>i</sub> v<sub>i</sub>[((N−i+1)/N)<sup>k</sup> − "
             "((N−i)/N)<sup>k</sup>] over the sorted scores; band: 95% percentile bootstrap over trials "
             f"({ctx.n_boot} resamples, seed {ctx.seed}). Trials without a score stay in N; the curve is then "
             "conditioned on at least one scored draw and the table gives P(all k failed) and the median best "
             "(failures as +inf, not conditioned). Bayesian trials are "
             "not independent draws, so for Bayesian arms the curve is only indicative.</p>")
    summary = curves.groupby("arm", sort=True).apply(
        lambda c: c[c["k"].isin({1, min(5, c["k"].max()), min(10, c["k"].max()), c["k"].max()})],
        include_groups=False).reset_index(level=0).reset_index(drop=True)
    return Section("budget", "Score vs budget (expected best of k trials)",
                   intro + _img(ctx, path, "expected best score vs budget")
                   + ctx.table(summary, "budget", "Expected best at k = 1, 5, 10, N (full curves in budget_curves.csv)")
                   + _csv_only(ctx, curves, "budget_curves"))


def _csv_only(ctx: Context, frame: pd.DataFrame, name: str) -> str:
    path = tables.write_table(frame, ctx.out / "tables", name)["csv"]
    return f'<p class="note">full data: <a href="tables/{html.escape(path.name)}">{html.escape(path.name)}</a></p>'


def section_ablation(ctx: Context) -> Section:
    table = tables.ablation_table(ctx.trials, n_boot=max(200, ctx.n_boot), seed=ctx.seed)
    if table.empty:
        return Section("ablation", "ResNet ablation",
                       _not_applicable("no ResNet arms that differ in resnet_* / generator_bn_epsilon switches with a default"))
    path = figures.ablation_heatmap(table, ctx.figure_path("ablation"))
    intro = ("<p>Switches relative to the default ResNet (RES identity shortcut, CIN, OPT, SUM pooling, TAN, EPS "
             "G batch-norm epsilon; ALL = all six). Differences are switch − default (negative = better); "
             "intervals: 95% percentile bootstrap, switch and default trials resampled independently.</p>")
    return Section("ablation", "ResNet ablation", intro + _img(ctx, path, "ablation heat-map")
                   + ctx.table(table, "ablation", "Ablation: best and median score per switch vs the default"))


def section_tricks(ctx: Context) -> Section | None:
    """The training tricks against their baseline, in the top-k% / budget form; None (no
    section) when the study has no trick arms (a context with baseline and trick trials)."""
    labelled = tables.trick_trials(ctx.trials)
    if labelled.empty:
        return None
    table = tables.tricks_table(ctx.trials, ctx.top, n_boot=max(200, ctx.n_boot), seed=ctx.seed)
    # One box / curve per (base arm, trick): the arm label names both.
    shown = labelled.assign(arm=labelled["loss"].astype(str) + "/" + labelled["normalization"].astype(str) + "/"
                            + labelled["penalty"].astype(str) + "/" + labelled["architecture"].astype(str)
                            + ": " + labelled["trick"])
    top_path = figures.top_k_by_arm_figure(shown, ctx.top, ctx.metric, ctx.figure_path("tricks_top"), ctx.references)
    curves = tables.budget_curves(shown, n_boot=ctx.n_boot, seed=ctx.seed)
    budget_path = figures.budget_figure(curves, ctx.metric, ctx.figure_path("tricks_budget"),
                                        max_arms=max(1, shown["arm"].nunique()), references=ctx.references)
    intro = (f"<p>Each training trick (search_spaces.tricks: one-sided label smoothing, noisy labels, instance "
             "noise, normal z, SGD for D, TTUR, minibatch standard deviation) against the baseline of the same "
             "arm, over the same grid. Boxes: the best "
             f"{ctx.top:.0%} of each (arm, trick)'s trials; curves: expected best of k trials, as in the sections "
             "above. In the table, differences are trick − baseline (negative = better); diff_low/diff_high: 95% "
             f"percentile-bootstrap interval of the best-{ctx.top:.0%} median difference, trick and baseline "
             "trials resampled independently; expected_best_k5: the expected best of min(5, N) trials.</p>")
    return Section("tricks", "Tricks", intro + _img(ctx, top_path, f"top {ctx.top:.0%} per arm and trick")
                   + ctx.table(table, "tricks", f"Tricks vs baseline: best-{ctx.top:.0%} median and expected best of 5")
                   + _img(ctx, budget_path, "expected best score vs budget per arm and trick"))


def section_sensitivity(ctx: Context) -> Section:
    parts = []
    finite = ctx.trials[np.isfinite(ctx.trials["score"].to_numpy(float))]
    for dataset, group in finite.groupby("dataset", sort=True):
        parameters = [h for h in HYPERPARAMETERS if group[h].nunique() > 1]
        if not parameters:
            continue
        slug = _slug(dataset)
        path = figures.sensitivity_figure(group, parameters, ctx.metric, f"{dataset}: score vs hyperparameters "
                                          "(10 best arms; lines: medians)", ctx.figure_path(f"sensitivity_{slug}"),
                                          references=ctx.references.get(str(dataset)))
        parts.append(f"<h3>{html.escape(dataset)}</h3>" + _img(ctx, path, f"sensitivity {dataset}"))
    if parts:
        parts.append(_csv_only(ctx, tables.sensitivity_table(ctx.trials), "sensitivity"))
    else:
        parts.append(_not_applicable("no hyperparameter varies among scored trials"))
    rounds = tables.rounds_table(ctx.trials)
    if rounds.empty:
        parts.append("<h3>Bayesian rounds</h3>" + _not_applicable("no trials from a Bayesian search"))
    else:
        bayes_datasets = ctx.trials.loc[ctx.trials["search"] == "bayesian", "dataset"].astype(str).unique()
        refs = ctx.references.get(bayes_datasets[0]) if len(bayes_datasets) == 1 else None
        path = figures.rounds_figure(rounds, ctx.metric, ctx.figure_path("bayesian_rounds"), references=refs)
        parts.append("<h3>Bayesian rounds</h3>" + _img(ctx, path, "best score per Bayesian round")
                     + ctx.table(rounds, "bayesian_rounds", "Best score per Bayesian round and best so far"))
    return Section("sensitivity", "Sensitivity to hyperparameters", "".join(parts))


def section_training(ctx: Context, per_dataset: int = 6) -> Section:
    parts = []
    finite = ctx.trials[np.isfinite(ctx.trials["score"].to_numpy(float))]
    for dataset, group in finite.groupby("dataset", sort=True):
        # the best trial of each of the best arms: six curves of one arm would say little
        top = group.sort_values(["score", "study", "trial_id"]).drop_duplicates("arm").head(per_dataset)
        path = figures.training_curves_figure(ctx.rows, top, ctx.metric, ctx.figure_path(f"curves_{_slug(dataset)}"),
                                              references=ctx.references.get(str(dataset)))
        parts.append(f"<h3>{html.escape(dataset)}: best trial of each of the {len(top)} best arms</h3>"
                     + _img(ctx, path, f"training curves {dataset}"))
    if not parts:
        parts.append(_not_applicable("no trial has a finite score"))
    counts = ctx.trials["status"].value_counts()
    parts.append("<h3>Outcomes</h3><p>" + ", ".join(f"{_esc(int(counts.get(s, 0)))} {s}"
                                                   for s in ("completed", "running", "diverged", "failed"))
                 + f" of {len(ctx.trials)} trials.</p>")
    bad = ctx.trials[ctx.trials["status"].isin(["diverged", "failed"]) | ctx.trials["diverged"]]
    if bad.empty:
        parts.append(_not_applicable("no trial diverged or failed"))
    else:
        listing = bad[["study", "trial_id", "arm", "status", "last_step", "score", "error"]].sort_values(["status", "arm"])
        parts.append(ctx.table(listing, "diverged_failed", "Diverged and failed trials with their reasons", max_rows=200))
    return Section("training", "Training curves and failures", "".join(parts))


def section_samples(ctx: Context) -> Section:
    finite = ctx.trials[np.isfinite(ctx.trials["score"].to_numpy(float))]
    if finite.empty:
        return Section("samples", "Samples", _not_applicable("no trial has a finite score"))
    cards, missing = [], []
    best = _with_best_step_metrics(ctx, finite.sort_values("score").drop_duplicates("arm").sort_values("arm"))
    directories = {s.name: s.directory for s in ctx.data.studies}
    for trial in best.itertuples():
        trial_dir = directories[trial.study] / "trials" / trial.trial_id
        candidates = []
        if not pd.isna(trial.best_step):
            candidates.append(trial_dir / f"samples_step{int(trial.best_step):08d}.png")
        candidates.append(trial_dir / "samples.png")
        source = next((c for c in candidates if c.is_file()), None)
        if source is None:
            missing.append(trial.arm)
            continue
        target = ctx.out / "samples" / f"{_slug(trial.study)}_{_slug(trial.trial_id)}_{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        which = "best step" if source.name != "samples.png" else "final step"
        cards.append(f'<div class="card"><img src="samples/{html.escape(target.name)}" alt="samples {html.escape(trial.arm)}">'
                     f"<div>{html.escape(trial.arm)}<br>{html.escape(trial.trial_id)} · score {_esc(trial.score)} · "
                     f"{which}{_classes_text(trial)}</div></div>")
    body = "<p>Image grid of each arm's best trial, at its best-score step when that grid was saved.</p>"
    body += f'<div class="cards">{"".join(cards)}</div>' if cards else _not_applicable("no sample grids were saved")
    if missing:
        body += f'<p class="note">no sample grid for: {html.escape(", ".join(missing))}</p>'
    return Section("samples", "Samples", body)


def _classes_text(trial) -> str:
    """The card's label-based scores at the best step: classes covered, m-IS, 1-NN accuracy, GAN-test/train."""
    def finite(name):
        value = getattr(trial, name, np.nan)
        return value if isinstance(value, (int, float)) and np.isfinite(value) else None

    parts = []
    if finite("classes_covered_domain") is not None:
        parts.append(f"{int(finite('classes_covered_domain'))} classes covered")
    for name, label in (("m_is_domain", "m-IS"), ("one_nn_accuracy_domain", "1-NN acc."),
                        ("gan_test_domain", "GAN-test"), ("gan_train_domain", "GAN-train")):
        if finite(name) is not None:
            parts.append(f"{label} {finite(name):.3g}")
    return "".join(f" · {part}" for part in parts)


def section_seeds(ctx: Context) -> Section:
    parts = []
    variance = stats.seed_variance(ctx.trials, n_boot=max(200, ctx.n_boot), seed=ctx.seed)
    parts.append("<h3>Seed variance</h3>")
    if variance.empty:
        parts.append(_not_applicable("no setting was run with several seeds"))
    else:
        parts.append("<p>Settings run with several seeds: mean ± std (ddof 1) of the trial scores over seeds and a "
                     "95% percentile-bootstrap interval of the mean; seeds without a score are counted in "
                     "<code>failed</code> and left out of the mean.</p>"
                     + ctx.table(variance, "seed_variance", "Seed variance per setting"))
    importance = stats.hyperparameter_importance(ctx.trials, seed=ctx.seed)
    parts.append("<h3>Hyperparameter importance</h3>")
    if importance.empty:
        parts.append(_not_applicable("no arm has 12 or more scored trials with a varying hyperparameter"))
    else:
        parts.append(f"<p>Method: random forest ({stats.IMPORTANCE_TREES} bootstrap regression trees) predicting log10(score + 1) from lr, "
                     "λ (both log10), β1, β2, n_dis; importance = Breiman's out-of-bag permutation importance, the "
                     "increase of each tree's out-of-bag mean squared error when a column is shuffled, averaged over "
                     "trees, as a fraction of the target's variance. <code>oob_r2</code> is the forest's out-of-bag R²; "
                     "importances of arms with R² near or below 0 are noise. Blank: the parameter does not vary.</p>"
                     + ctx.table(importance, "importance", "Permutation importance per arm (out-of-bag MSE increase / variance)"))
    return Section("seeds", "Seed variance and importance", "".join(parts))


def section_facts(ctx: Context) -> Section:
    parts = []
    for study in ctx.data.studies:
        manifest = study.manifest
        trials = ctx.trials[ctx.trials["study"] == study.name]
        facts: list[tuple[str, str]] = [("directory", str(study.directory))]
        if manifest is None:
            facts.append(("manifest", f"missing or unreadable: {study.manifest_problem}"))
        else:
            for key in ("command", "space", "search", "git_commit", "seed", "started", "finished"):
                if key in manifest:
                    facts.append((key, _plain(manifest[key])))
            for key in ("versions", "hardware"):
                if isinstance(manifest.get(key), dict):
                    facts.append((key, ", ".join(f"{k} {_plain(v)}" for k, v in manifest[key].items())))
            if "wall_time_s" in manifest:
                facts.append(("wall time", f"{_plain(manifest['wall_time_s'])} s"))
            if "trials_total" in manifest:
                facts.append(("trials planned", _plain(manifest["trials_total"])))
            if "finished" not in manifest:
                facts.append(("state", "still running (no 'finished' in the manifest)"))
        counts = trials["status"].value_counts()
        facts.append(("trials in results", f"{len(trials)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"))
        rate = _trials_per_hour(manifest, trials)
        if rate:
            facts.append(("trials per hour", rate))
        device = trials["device_seconds"].sum(skipna=True)
        facts.append(("device hours (sum over trials)", f"{device / 3600:.3g}"))
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
        parts.append(f"<h3>{html.escape(study.name)}</h3><table class=\"facts\">{rows}</table>")
    parts.append("<h3>Score protocol</h3>" + ctx.table(_protocol_table(ctx), "protocol",
                                                          f"FID protocol of the {ctx.metric} rows per study and dataset"))
    return Section("facts", "Run facts", "".join(parts))


def _protocol_table(ctx: Context) -> pd.DataFrame:
    scored = ctx.data.rows[ctx.data.rows[ctx.metric].notna()]
    columns = [c for c in PROTOCOL_COLUMNS if c in scored.columns]
    if scored.empty:
        return pd.DataFrame(columns=["study", "dataset", *columns, "rows"])
    filled = scored[["study", "dataset", *columns]].astype(object).where(scored[["study", "dataset", *columns]].notna(), "?")
    return filled.astype(str).value_counts().rename("rows").reset_index().sort_values(["study", "dataset"])


def _trials_per_hour(manifest: dict | None, trials: pd.DataFrame) -> str:
    ended = int(trials["status"].isin(["completed", "diverged", "failed"]).sum())
    if manifest and isinstance(manifest.get("wall_time_s"), (int, float)) and manifest["wall_time_s"] > 0:
        return f"{ended / (manifest['wall_time_s'] / 3600):.3g}"
    if manifest and manifest.get("started") and not manifest.get("finished"):
        try:
            started = _dt.datetime.fromisoformat(str(manifest["started"]))
            if started.tzinfo is None:
                started = started.replace(tzinfo=_dt.timezone.utc)
            hours = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds() / 3600
            return f"{ended / hours:.3g} so far" if hours > 0 else ""
        except ValueError:
            return ""
    return ""


def section_all_trials(ctx: Context) -> Section:
    columns = ["study", "trial_id", "arm", "search", "round", *tables.varying_config_columns(ctx.trials),
               "score", "best_step", "status", "last_step", "error"]
    columns = list(dict.fromkeys(c for c in columns if c in ctx.trials.columns))
    compact = ctx.trials[columns]
    full_columns = [c for c in ctx.trials.columns if c != "study_dir"]
    csv = _csv_only(ctx, ctx.trials[full_columns], "trials_all_fields")
    return Section("trials", "All trials", ctx.table(compact, "trials", f"All trials by score ({ctx.metric}; varying config fields)",
                                                    max_rows=500) + csv)


def _plain(value) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))[:60]


# ----------------------------------------------------------------------------- page
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.5em 3em;color:#1d2330}
h1{margin-top:.6em} h2{border-bottom:2px solid #dde3ee;padding-bottom:.2em;margin-top:2em} h3{margin-bottom:.3em}
nav a{margin-right:1em} .notice{background:#fff4e0;border-left:5px solid #e69500;padding:.6em 1em;margin:.6em 0}
.notice.bad{background:#fde8e8;border-color:#c62828} .na{color:#777;font-style:italic}
figure{margin:.5em 0} figure img{max-width:100%;border:1px solid #eee}
table.data{border-collapse:collapse;font-size:12px} table.data th,table.data td{border:1px solid #dde3ee;padding:2px 6px}
table.data th{background:#f1f4f9;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.facts th{text-align:left;padding-right:1em;vertical-align:top} table.facts td{font-family:monospace;font-size:12px}
.scroll{max-height:520px;overflow:auto} .caption{font-weight:600;margin-bottom:.2em} .note{color:#555;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{width:180px;font-size:11px;word-break:break-all}
.card img{width:176px;image-rendering:pixelated;border:1px solid #ccc}
"""


def _notices(ctx: Context, excluded: pd.DataFrame) -> list[tuple[str, str]]:
    notices = []
    for r in stats.learning_summary(ctx.trials, ctx.references).itertuples():
        if r.beat_noise == 0:
            notices.append(("bad", f"The trials did not learn: none of the {r.trials} trials on {r.dataset} scores better "
                                   f"than uniform noise ({ctx.metric} {r.noise:.4g}; real-data floor {r.floor:.4g}, "
                                   f"mean image {r.mean_image:.4g}). Rankings, boxes and the best setting below compare "
                                   "untrained networks."))
    if ctx.metric == "fid_domain":
        notices.append(("bad", "No Inception FID in these results (the Inception weights were not available): scores are "
                               "FID in a domain feature space (fid_domain), NOT comparable with published FIDs."))
    if not excluded.empty:
        detail = "; ".join(f"{r.dataset}: {r.trials} trial(s) / {r.rows} row(s) with [{r.protocol}]" for r in excluded.itertuples())
        notices.append(("bad", f"Score rows measured under a different FID protocol than the dataset's dominant one were "
                               f"left out (not mixed): {detail}. See Run facts → Score protocol."))
    if ctx.metric == "fid":
        domain_only = ctx.data.rows.groupby("study")["fid"].apply(lambda s: s.notna().any())
        lacking = [s for s, has in domain_only.items() if not has]
        if lacking:
            notices.append(("bad", f"Studies without Inception FID: {', '.join(lacking)}; their trials have no score "
                                   "here (their fid_domain values are not mixed with FID)."))
    for study in ctx.data.studies:
        if study.manifest is None:
            notices.append(("", f"Study {study.name}: {study.manifest_problem}; run facts are incomplete."))
        elif "finished" not in study.manifest:
            notices.append(("", f"Study {study.name} is still running (no 'finished' in its manifest): partial results."))
    running = int((ctx.trials["status"] == "running").sum())
    if running:
        notices.append(("", f"{running} trial(s) still running; their score is the best so far."))
    if len(ctx.trials) and not np.isfinite(ctx.trials["score"].to_numpy(float)).any():
        notices.append(("bad", "No trial has a finite score (all diverged or failed)."))
    return notices


def _page(title: str, subtitle: str, notices: list[tuple[str, str]], sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    notes = "".join(f'<div class="notice {kind}">{html.escape(text)}</div>' for kind, text in notices)
    body = "".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{GENERATOR_MARK}"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{subtitle}</p>{notes}<nav>{nav}</nav>{body}</body></html>\n")


def _prepare_out(out: pathlib.Path) -> None:
    """Creates the folder; clears the subfolders a previous report build wrote (only
    when index.html there is ours), so no stale figure or table survives."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    if index.is_file() and GENERATOR_MARK in index.read_text(errors="replace")[:2000]:
        for name in OWNED_SUBDIRS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)


def localize_study(study_dir) -> pathlib.Path:
    """A study directory on this machine: a local path as is; a URI (s3://, gs://) is
    downloaded to a local cache first (its results, manifest and sample grids; not the
    checkpoints), so the report reads a remote study like a local one."""
    text = str(study_dir)
    if "://" not in text or text.startswith("file://"):
        return pathlib.Path(text[len("file://"):] if text.startswith("file://") else text)

    try:
        study = at(text)
        if not study.exists():
            raise StudyDataError(f"study {text} does not exist; expected a study written by python -m study.run")
        cache = local_cache(study)
        for name in ("manifest.json", "results.parquet"):
            if (study / name).exists():
                (study / name).download(cache / name)
        trials = study / "trials"
        for trial_id in trials.children():
            for name in (trials / trial_id).children():
                if name.endswith(".png"):
                    (trials / trial_id / name).download(cache / "trials" / trial_id / name)
    except StorageError as error:
        raise StudyDataError(str(error)) from None
    except OSError as error:
        raise StudyDataError(f"study {text} cannot be read: {str(error).splitlines()[0]}") from None
    return cache


def build_report(study_dirs, out_dir=None, top: float = 0.05, n_boot: int = 200, seed: int = 0) -> pathlib.Path:
    """Builds the report of one or several study directories; returns the path of index.html.

    `out_dir` defaults to STUDY_DIR/report for one study and is required for several.
    `top` is the top-k fraction of the top-k% plots; `n_boot` and `seed` fix the bootstrap.
    Raises StudyDataError (one line) on unusable input.
    """
    if isinstance(study_dirs, (str, pathlib.Path)):
        study_dirs = [study_dirs]
    study_dirs = [localize_study(d) for d in study_dirs]
    if not (isinstance(top, (int, float)) and 0 < top <= 1):
        raise StudyDataError(f"--top {top!r} is out of range; expected a fraction in (0, 1], e.g. 0.05")
    if out_dir is None:
        if len(study_dirs) != 1:
            raise StudyDataError(f"{len(study_dirs)} study directories given without --out; give --out DIR for several studies")
        out_dir = pathlib.Path(study_dirs[0]) / "report"
    data = load_studies(study_dirs)
    out = pathlib.Path(out_dir).expanduser().resolve()
    _prepare_out(out)
    metric = stats.choose_score_metric(data.rows)
    rows, excluded = stats.split_by_protocol(data.rows, metric)
    trials = stats.trial_table(rows, metric)
    ctx = Context(data, rows, trials, metric, float(top), out, n_boot, seed, stats.reference_points(rows, metric))
    names = ", ".join(s.name for s in data.studies)
    title = f"GAN study report: {names}"
    subtitle = (f"{len(data.rows)} rows, {len(trials)} trials, {trials['arm'].nunique() if len(trials) else 0} arms. "
                f"Score: {html.escape(stats.metric_label(metric))}, a trial's minimum over its evaluations "
                f"(lower is better). Generated {html.escape(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}.")
    if trials.empty:
        why = "the study has no results yet (no results.parquet or zero rows)"
        sections = [Section(a, t, _not_applicable(why)) for a, t in (
            ("top", "Top-k per cell"), ("budget", "Score vs budget"), ("ablation", "ResNet ablation"),
            ("sensitivity", "Sensitivity"), ("training", "Training curves and failures"), ("samples", "Samples"),
            ("seeds", "Seed variance and importance"))]
        sections.append(section_facts(ctx))
        notices = [("bad", "No results yet: " + why + ".")] + [n for n in _notices(ctx, excluded) if "finite score" not in n[1]]
    else:
        sections = [section_summary(ctx), section_top_k(ctx), section_budget(ctx), section_ablation(ctx),
                    section_tricks(ctx), section_sensitivity(ctx), section_training(ctx), section_samples(ctx),
                    section_seeds(ctx), section_facts(ctx), section_all_trials(ctx)]
        sections = [s for s in sections if s is not None]
        notices = _notices(ctx, excluded)
    index = out / "index.html"
    index.write_text(_page(title, subtitle, notices, sections), encoding="utf-8")
    return index


def _check_report_out(out: str) -> None:
    """--out must be a writable folder, and one whose index.html (if any) this command
    wrote: someone's own page there would be overwritten."""

    try:
        folder = check_output_dir(out, "--out")
    except ValueError as error:
        raise StudyDataError(str(error)) from None
    index = folder / "index.html"
    if index.exists():
        try:
            ours = GENERATOR_MARK in index.read_text(errors="replace")[:2000]
        except OSError:
            ours = False
        if not ours:
            raise StudyDataError(f"--out {out}: its index.html was not written by analysis.report and would be "
                                 f"overwritten; give another folder")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("study_dirs", nargs="+", metavar="STUDY_DIR")
    parser.add_argument("--out", default=None, help="report folder (default STUDY_DIR/report; required for several)")
    parser.add_argument("--top", type=float, default=0.05, help="top-k fraction of the top-k%% plots (default 0.05)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        if args.bootstrap < 1:
            raise StudyDataError(f"--bootstrap {args.bootstrap} is not allowed; it must be >= 1 (e.g. 200)")
        if args.out is not None:
            _check_report_out(args.out)
        index = build_report(args.study_dirs, args.out, args.top, args.bootstrap, args.seed)
    except StudyDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
