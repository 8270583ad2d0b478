"""The report end to end on small study directories: sections, files, escaping, edge cases."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.load import StudyDataError, load_studies
from analysis.report import build_report, main
from analysis.synthetic import _BASE_CONFIG, write_synthetic_studies

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    dirs = write_synthetic_studies(root / "studies", rows=400, seed=1)
    index = build_report(dirs, out_dir=root / "report", top=0.05)
    return dirs, index


def _write(study_dir: pathlib.Path, rows: list[dict] | None, manifest: dict | None = None) -> pathlib.Path:
    study_dir.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        pd.DataFrame(rows).to_parquet(study_dir / "results.parquet", index=False)
    if manifest is not None:
        (study_dir / "manifest.json").write_text(json.dumps(manifest))
    return study_dir


def _row(trial, step, fid, status="completed", final=True, **extra):
    row = {**_BASE_CONFIG, "study": "hand", "trial_id": trial, "arm": "sndcgan/ns/spectral/gp/cifar10",
           "search": "grid", "round": 0, "step": step, "wall_time_s": 1.0, "device_seconds": 1.0,
           "images_per_s": 10.0, "fid": fid, "fid_domain": np.nan, "d_loss": 0.4, "g_loss": 1.2,
           "fid_features": "inception_v3_pool3", "fid_real_samples": 10000, "diverged": status == "diverged",
           "status": status, "error": "", "final": final}
    row.update(extra)
    return row


MANIFEST = {"study": "hand", "space": "table1", "search": "grid", "arms": [], "command": "python -m study.run",
            "argv": [], "versions": {"jax": "0.10"}, "git_commit": "abc", "seed": 0,
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:00:00+00:00",
            "wall_time_s": 3600.0, "hardware": {"cpu": 2}, "trials_total": 2}


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_synthetic_report_has_every_section_and_files(synthetic):
    dirs, index = synthetic
    html = index.read_text()
    for title in ("Summary", "Top 5% per cell", "Score vs budget", "ResNet ablation", "Sensitivity to hyperparameters",
                  "Training curves and failures", "Samples", "Seed variance and importance", "Run facts", "All trials"):
        assert f"<h2>{title}" in html, title
    for axis in ("loss", "normalization", "penalty", "architecture", "dataset"):
        assert f"figures/top_{axis}.png" in html
    assert "not applicable" not in html.split('id="ablation"')[1].split("</section>")[0]
    images = _images(html)
    assert len([i for i in images if i.startswith("samples/")]) == load_studies(dirs).rows["arm"].nunique()
    for relative in images:
        assert (index.parent / relative).stat().st_size > 0, relative
    for name in ("best_trials", "trials", "arms", "budget", "ablation", "seed_variance", "importance", "bayesian_rounds", "protocol"):
        assert (index.parent / "tables" / f"{name}.csv").is_file(), name
        assert "\\toprule" in (index.parent / "tables" / f"{name}.tex").read_text()
    trials = pd.read_csv(index.parent / "tables" / "trials_all_fields.csv")
    assert len(trials) == load_studies(dirs).rows.groupby(["study", "trial_id"]).ngroups
    assert {"failed", "diverged", "completed"} <= set(trials["status"])
    assert "synthetic_grid" in html and "synthetic_bayes" in html  # merged studies, run facts for each


def test_budget_csv_matches_closed_form(synthetic):
    from analysis import stats

    dirs, index = synthetic
    rows = load_studies(dirs).rows
    trials = stats.trial_table(rows, "fid")
    curves = pd.read_csv(index.parent / "tables" / "budget_curves.csv")
    arm = trials["arm"].value_counts().index[0]
    expected = stats.expected_best_of_k(trials.loc[trials["arm"] == arm, "score"])
    got = curves[curves["arm"] == arm].sort_values("k")
    assert np.allclose(got["expected_best"].to_numpy(), expected["expected_best"].to_numpy(), equal_nan=True)
    assert got["trials"].iloc[0] == (trials["arm"] == arm).sum()


def test_config_strings_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    rows = [_row("aaaaaaaaaaaa", 100, 30.0, arm=f"sndcgan/{evil}", error=""),
            _row("bbbbbbbbbbbb", 0, np.nan, status="failed", error=f"boom {evil}", loss=evil),
            # "$...$" would be mathtext to matplotlib (and "$x" alone a parse error)
            _row("cccccccccccc", 100, 31.0, arm="resnet_cifar/$\\foo$/x", architecture="resnet_cifar",
                 loss="$x", resnet_d_cin=True),
            _row("dddddddddddd", 100, 32.0, arm="resnet_cifar/$x", architecture="resnet_cifar", loss="$x")]
    study = _write(tmp_path / "evil", rows, {**MANIFEST, "command": f"run {evil}"})
    html = build_report([study]).read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "resnet_cifar/$\\foo$/x" in html
    assert (study / "report" / "figures" / "ablation.png").is_file()


def test_cli_prints_index_path_last(tmp_path, capsys):
    # extra columns the runner adds (a per-row "score", timings) are tolerated and ignored
    extra = {"score": 999.0, "eval_seconds": 1.5, "d_grad_norm": 0.1}
    study = _write(tmp_path / "s", [_row("aaaaaaaaaaaa", 100, 30.0, **extra), _row("bbbbbbbbbbbb", 100, 35.0, **extra)],
                   MANIFEST)
    assert main([str(study), "--top", "0.5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str(study.resolve() / "report" / "index.html")
    assert pathlib.Path(last).is_file()
    trials = pd.read_csv(study / "report" / "tables" / "trials.csv")
    assert sorted(trials["score"]) == [30.0, 35.0]


def test_cli_module_bad_input_one_line(tmp_path):
    missing = tmp_path / "nope"
    result = subprocess.run([sys.executable, "-m", "analysis.report", str(missing)], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert str(missing) in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("args, message", [
    (lambda d: dict(study_dirs=[d / "a", d / "b"]), "--out"),
    (lambda d: dict(study_dirs=[d / "a"], top=0.0), "--top"),
    (lambda d: dict(study_dirs=[d / "a", d / "a"], out_dir=d / "o"), "given twice"),
    (lambda d: dict(study_dirs=[d / "empty_dir"]), "neither results.parquet nor manifest.json"),
])
def test_bad_arguments_raise_clear_errors(tmp_path, args, message):
    _write(tmp_path / "a", [_row("aaaaaaaaaaaa", 100, 30.0)], MANIFEST)
    _write(tmp_path / "b", [_row("aaaaaaaaaaaa", 100, 30.0)], MANIFEST)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(StudyDataError, match=re.escape(message)):
        build_report(**args(tmp_path))


def test_missing_column_is_named(tmp_path):
    study = _write(tmp_path / "s", [{k: v for k, v in _row("aaaaaaaaaaaa", 1, 3.0).items() if k != "status"}])
    with pytest.raises(StudyDataError, match="lacks column 'status'"):
        build_report([study])


@pytest.mark.parametrize("rows", [None, []])
def test_empty_study_says_no_results(tmp_path, rows):
    study = _write(tmp_path / "s", rows if rows is None else [_row("aaaaaaaaaaaa", 1, 3.0)], MANIFEST)
    if rows == []:
        pd.DataFrame([_row("aaaaaaaaaaaa", 1, 3.0)]).iloc[:0].to_parquet(study / "results.parquet")
    html = build_report([study]).read_text()
    assert "No results yet" in html
    assert html.count("not applicable: the study has no results yet") == 7
    assert "python -m study.run" in html  # run facts still shown


def test_only_failed_and_diverged(tmp_path):
    rows = [_row("aaaaaaaaaaaa", 0, np.nan, status="failed", error="oom"),
            _row("bbbbbbbbbbbb", 100, np.nan, status="diverged", error="NaN loss")]
    html = build_report([_write(tmp_path / "s", rows, MANIFEST)]).read_text()
    assert "No trial has a finite score" in html
    assert "oom" in html and "NaN loss" in html
    assert "1 diverged, 1 failed of 2 trials" in html.replace("0 completed, 0 running, ", "")


def test_unreadable_manifest_is_reported(tmp_path):
    study = _write(tmp_path / "s", [_row("aaaaaaaaaaaa", 100, 30.0)])
    (study / "manifest.json").write_text("{not json")
    html = build_report([study]).read_text()
    assert "manifest.json is not valid JSON" in html


def test_running_study_without_manifest(tmp_path):
    rows = [_row("aaaaaaaaaaaa", 100, 40.0, status="running", final=False),
            _row("aaaaaaaaaaaa", 200, 35.0, status="running", final=False),
            _row("bbbbbbbbbbbb", 100, 38.0)]
    html = build_report([_write(tmp_path / "s", rows)]).read_text()
    assert "manifest.json is missing" in html
    assert "1 trial(s) still running" in html
    trials = pd.read_csv(tmp_path / "s" / "report" / "tables" / "trials.csv")
    assert trials.set_index("trial_id").loc["aaaaaaaaaaaa", "score"] == 35.0


def test_domain_fid_is_labelled_and_protocol_mix_is_flagged(tmp_path):
    rows = [_row("aaaaaaaaaaaa", 100, np.nan, fid_domain=12.0, fid_features="domain_cnn"),
            _row("bbbbbbbbbbbb", 100, np.nan, fid_domain=14.0, fid_features="domain_cnn"),
            _row("cccccccccccc", 100, np.nan, fid_domain=1.0, fid_features="other_cnn")]
    index = build_report([_write(tmp_path / "s", rows, MANIFEST)])
    html = index.read_text()
    assert "NOT comparable with published FIDs" in html
    assert "different FID protocol" in html and "fid_features=other_cnn" in html
    trials = pd.read_csv(index.parent / "tables" / "trials.csv").set_index("trial_id")
    assert "cccccccccccc" not in trials.index  # left out as a whole, not mixed in, not a failure
    assert trials.loc["aaaaaaaaaaaa", "score"] == 12.0
    assert "1 trial(s) / 1 row(s)" in html


def test_rebuild_removes_stale_figures(tmp_path):
    study = _write(tmp_path / "s", [_row("aaaaaaaaaaaa", 100, 30.0), _row("bbbbbbbbbbbb", 100, 35.0)], MANIFEST)
    index = build_report([study])
    stale = index.parent / "figures" / "old.png"
    stale.write_bytes(b"x")
    build_report([study])
    assert not stale.exists()


def test_top_fraction_sets_selection_and_same_name_studies_merge(tmp_path):
    scores = {"ns": [10.0, 11.0, 12.0, 13.0], "wgan": [20.0, np.nan, 22.0, 23.0]}
    rows = []
    for loss, values in scores.items():
        for i, value in enumerate(values):
            status = "failed" if np.isnan(value) else "completed"
            rows.append(_row(f"{loss}{i}".ljust(12, "0"), 100, value, status=status, loss=loss,
                             arm=f"sndcgan/{loss}/spectral/gp/cifar10"))
    first = _write(tmp_path / "run1", rows, MANIFEST)
    second = _write(tmp_path / "run2", [{**r, "fid": r["fid"] - 5.0} for r in rows], MANIFEST)  # same study name
    index = build_report([first, second], out_dir=tmp_path / "out", top=0.25)
    top = pd.read_csv(index.parent / "tables" / "top_loss.csv").set_index("loss")
    assert top.loc["ns", "trials"] == 8 and top.loc["ns", "top_m"] == 2  # ceil(0.25 * 8)
    assert (top.loc["ns", "top_best"], top.loc["ns", "top_worst"]) == (5.0, 6.0)
    assert top.loc["wgan", "no_score"] == 2 and top.loc["wgan", "top_best"] == 15.0
    trials = pd.read_csv(index.parent / "tables" / "trials.csv")
    assert sorted(trials["study"].unique()) == ["hand", "hand (run2)"]
    assert len(trials) == 16


def test_report_never_imports_the_training_stack(tmp_path):
    """analysis must build on a laptop without JAX/Flax/Ray or the models package; of `study` it
    reads only the record contract (study.schema) and the storage readers (study.storage)."""
    study = _write(tmp_path / "s", [_row("aaaaaaaaaaaa", 100, 30.0), _row("bbbbbbbbbbbb", 100, 35.0)], MANIFEST)
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        allowed = name in ('study', 'study.schema') or name.startswith('study.storage')\n"
        "        if name.split('.')[0] in {'jax', 'flax', 'ray', 'study', 'models', 'optax'} and not allowed:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from analysis.report import main\n"
        f"sys.exit(main([{str(study)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].endswith("index.html")


# ---------------------------------------------------------------- reference points and learning
def _reference_rows(noise: float) -> list[dict]:
    refs = {"fid_ref_floor": 5.0, "fid_ref_noise": noise, "fid_ref_mean_image": 400.0}
    out = []
    for trial, arm, lr, scores in (("aaaaaaaaaaaa", "sndcgan/ns/spectral/gp/cifar10", 2e-4, (14.0, 10.0)),
                                   ("bbbbbbbbbbbb", "sndcgan/ns/spectral/gp/cifar10", 1e-3, (35.0, 30.0)),
                                   ("cccccccccccc", "sndcgan/ns/none/gp/cifar10", 2e-4, (15.0, 12.0)),
                                   ("dddddddddddd", "sndcgan/ns/none/gp/cifar10", 1e-3, (45.0, 40.0))):
        for step, fid in zip((100, 200), scores):
            out.append(_row(trial, step, fid, final=step == 200, arm=arm, learning_rate=lr,
                            normalization=arm.split("/")[2], **refs))
    return out


def test_reference_points_drawn_on_every_fid_figure_and_summarised(tmp_path, monkeypatch):
    from analysis import figures

    calls = []
    original = figures.reference_lines

    def recording(ax, references, horizontal=False):
        calls.append((sys._getframe(1).f_code.co_name, dict(references or {})))
        return original(ax, references, horizontal)

    monkeypatch.setattr(figures, "reference_lines", recording)
    html = build_report([_write(tmp_path / "s", _reference_rows(noise=25.0), MANIFEST)]).read_text()
    drawn = {name for name, refs in calls if refs == {"floor": 5.0, "noise": 25.0, "mean_image": 400.0}}
    assert {"top_k_figure", "top_k_by_arm_figure", "budget_figure", "sensitivity_figure",
            "training_curves_figure"} <= drawn, calls
    assert "2 of 4 trials beat uniform noise" in html
    assert "2× the real-data floor" in html  # best 10 / floor 5
    assert "did not learn" not in html


def test_no_trial_beats_noise_gets_a_red_notice_at_the_top(tmp_path):
    html = build_report([_write(tmp_path / "s", _reference_rows(noise=8.0), MANIFEST)]).read_text()
    head = html.split("<nav>")[0]
    assert re.search(r'<div class="notice bad">The trials did not learn: none of the 4 trials', head)
    assert "0 of 4 trials beat uniform noise" in html


def test_reference_lines_are_labelled_and_far_ones_noted():
    from analysis import figures

    figure = figures._new_figure(4, 3)
    ax = figure.subplots()
    ax.plot([0, 1], [10.0, 40.0])
    figures.reference_lines(ax, {"floor": 5.0, "noise": 45.0, "mean_image": 400.0})
    lines = sorted(line.get_ydata()[0] for line in ax.lines[1:])
    assert lines == [5.0, 45.0]  # mean image 400 lies far above the data: noted, not drawn
    texts = [t.get_text() for t in ax.texts]
    assert any("real data (floor) 5" in t for t in texts) and any("uniform noise 45" in t for t in texts)
    assert any(t.startswith("above the plot: mean image 400") for t in texts)
    assert ax.get_ylim()[0] <= 5.0


def test_adjacent_arm_separation_marks_ties():
    from analysis import stats

    rng = np.random.default_rng(0)
    trials = pd.DataFrame({
        "dataset": "d", "arm": ["a"] * 20 + ["b"] * 20 + ["c"] * 20,
        "score": np.concatenate([10 + rng.random(20), 10 + rng.random(20), 50 + rng.random(20)])})
    table = stats.adjacent_arm_separation(trials, fraction=0.5, n_boot=300).set_index("arm")
    assert table["rank"].tolist() == [1, 2, 3]
    second = table.index[1]
    assert table.loc[second, "separable"] is False or table.loc[second, "separable"] == False  # noqa: E712
    assert table.loc["c", "separable"] == True and table.loc["c", "diff_low"] > 35  # noqa: E712


def test_best_trials_show_label_scores_at_the_best_step(tmp_path):
    # m-IS and the 1-NN accuracy are read at each trial's best-score step (step 2 here), columns
    # no row has (GAN-test/train of conditional trials) are left out.
    rows = [_row("t1", 1, 50.0, final=False, m_is_domain=1.1, one_nn_accuracy_domain=0.9),
            _row("t1", 2, 20.0, m_is_domain=1.3, one_nn_accuracy_domain=0.7),
            _row("t2", 1, 30.0, m_is_domain=1.2, one_nn_accuracy_domain=0.8)]
    index = build_report([_write(tmp_path / "hand", rows, MANIFEST)], out_dir=tmp_path / "report")
    best = pd.read_csv(index.parent / "tables" / "best_trials.csv").set_index("trial_id")
    assert best.loc["t1", "m_is_domain"] == 1.3 and best.loc["t1", "one_nn_accuracy_domain"] == 0.7
    assert "gan_train_domain" not in best.columns
    from analysis.report import _classes_text

    card = _classes_text(best.loc[["t1"]].reset_index().iloc[0])
    assert card == " · m-IS 1.3 · 1-NN acc. 0.7"
