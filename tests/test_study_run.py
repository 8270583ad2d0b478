"""`python -m study.run`: dry runs, errors, and a real two-trial study through Ray Tune."""
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from study.sweep import cli as run
from study.trial.config import TrialConfig


def _run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True, timeout=timeout)


def test_dry_run_json_prints_one_full_config_per_line(capsys):
    assert run.main(["--space", "table1", "--arms", "normalization=spectral,penalty=gp", "--dry-run", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 24
    configs = [TrialConfig.from_dict(json.loads(line)) for line in lines]
    assert {c.trial_id for c in configs}.__len__() == 24
    assert all(c.loss == "ns" and c.normalization == "spectral" and c.penalty == "gp" for c in configs)


def test_dry_run_table_states_the_count(capsys):
    assert run.main(["--space", "table1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "144 trials in space table1 (grid)" in out


def test_a_set_override_of_a_grid_axis_runs_each_distinct_trial_once(capsys):
    # Table 1's SN + GP arm: lr {2e-4, 1e-4, 1e-3} x lambda {1, 10} x 4 (beta1, beta2, n_dis) = 24;
    # fixing lr leaves 8 distinct settings.
    assert run.main(["--space", "table1", "--arms", "normalization=spectral,penalty=gp", "--set", "learning_rate=1e-3",
                     "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    configs = [TrialConfig.from_dict(json.loads(line)) for line in captured.out.strip().splitlines()]
    assert len(configs) == 8 == len({c.trial_id for c in configs})
    assert {c.learning_rate for c in configs} == {1e-3}
    assert "made 16 of the 24 trials of space 'table1' identical to others; 8 distinct trials run" in captured.err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--space", "tabel1"], "error: unknown search space 'tabel1'; choose one of: table1"),
        (["--dataset", "mnist"], "error: --dataset 'mnist' is unknown; choose one of: cifar10, celebahq128, lsun_bedroom, digits"),
        (["--scale", "huge"], "error: --scale 'huge' is unknown; choose one of: tiny, small, paper"),
        (["--arms", "loss=xx"], "error: --arms loss='xx' matches no arm of space 'table1'"),
        (["--set", "lr=1"], "error: --set field 'lr' is unknown; allowed fields:"),
        (["--set", "beta2=2"], "error: space 'table1': beta2=2.0 is out of range; allowed: [0, 1]"),
        (["--cpus-per-trial", "0"], "error: --cpus-per-trial=0.0 is not allowed; it must be > 0"),
        (["--pack", "0"], "error: --pack=0 is not allowed; it must be >= 1 or 'auto'"),
        (["--pack", "many"], "error: --pack=many is not allowed; it must be >= 1 or 'auto'"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, fragment, capsys):
    assert run.main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(fragment), err
    assert len(err.splitlines()) == 1


def test_the_driver_turns_off_rays_log_dedup_before_ray_is_imported():
    # Ray reads RAY_DEDUP_LOGS once, at import; set later, it still folds trial lines
    # into "[repeated Nx across cluster]". Checked in a fresh process without the variable.
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_DEDUP_LOGS", "RAY_AIR_NEW_OUTPUT")}
    probe = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
             "from ray._private import ray_logging; print(ray_logging.RAY_DEDUP_LOGS)")
    done = subprocess.run([sys.executable, "-c", probe, "study.run"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", done.stdout


def test_smoke_study_through_ray_writes_results_and_a_report(tmp_path):
    study_dir = tmp_path / "smoke"
    done = _run_cli("--space", "smoke", "--out", str(study_dir), "--set", "batch_size=16")
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"configs done 2/2", done.stderr)
    results = pd.read_parquet(study_dir / "results.parquet")
    expected_columns = {"study", "trial_id", "arm", "search", "step", "wall_time_s", "device_seconds",
                        "images_per_s", "fid_domain", "kid_domain", "diverged", "status", "final",
                        "fid_features", "fid_real_samples", *TrialConfig.field_names()}
    assert expected_columns <= set(results.columns)
    assert len(results) == 4  # 2 trials x evaluations at steps 10 and 20
    assert sorted(results["learning_rate"].unique()) == [2e-4, 1e-3]
    assert results.groupby("trial_id")["step"].apply(list).tolist() == [[10, 20], [10, 20]]
    assert (study_dir / "ray").is_dir()
    manifest = json.loads((study_dir / "manifest.json").read_text())
    assert manifest["space"] == "smoke" and manifest["trials_total"] == 2 and "finished" in manifest
    # Reference points in every row and in the manifest, equal to each other.
    for kind in ("floor", "noise", "mean_image"):
        column = f"fid_domain_ref_{kind}"
        assert results[column].notna().all() and results[column].nunique() == 1, column
        assert manifest["references"]["digits"][column] == results[column].iloc[0]
    assert results["fid_domain_ref_floor"].iloc[0] < results["fid_domain_ref_noise"].iloc[0]
    assert results["classes_covered_domain"].between(0, 10).all()
    index = study_dir / "report" / "index.html"
    # stdout holds only what the README says, the report path last: no Ray banners ("View
    # detailed results here", a TensorBoard hint, a "Configuration for experiment" box).
    assert done.stdout.strip().splitlines()[-1] == str(index)
    assert not re.search(r"View detailed results|tensorboard|Configuration for experiment", done.stdout, re.I), \
        done.stdout
    html = index.read_text()
    for target in re.findall(r'(?:src|href)="([^"#:]+)"', html):
        assert (index.parent / target).exists(), target

    # A rerun of the finished smoke study: its best setting, two new seeds, through Ray.
    rerun_dir = tmp_path / "rerun"
    done = _run_cli("--space", "rerun", "--from", str(study_dir), "--top", "1", "--seeds", "2",
                    "--out", str(rerun_dir), "--no-report")
    assert done.returncode == 0, done.stderr[-3000:]
    source_final = results.groupby("trial_id").agg(score=("score", "min"), lr=("learning_rate", "first"))
    best_lr = source_final.sort_values("score")["lr"].iloc[0]
    rerun_rows = pd.read_parquet(rerun_dir / "results.parquet")
    final = rerun_rows[rerun_rows["final"]]
    assert sorted(final["seed"]) == [1, 2] and set(final["learning_rate"]) == {best_lr}
    assert set(final["status"]) <= {"completed", "diverged"}
    assert set(final["batch_size"]) == {16}  # the source's fields, --set included, carried over
    manifest = json.loads((rerun_dir / "manifest.json").read_text())
    assert manifest["space"] == "rerun" and manifest["rerun_of"]["top"] == 1
    assert manifest["rerun_of"]["settings"][0]["source_trials"] == [source_final["score"].idxmin()]
