"""A study's storage (study.storage.location), verified checkpoints, a folder that remembers its
configuration, damaged rows, a study that loses a trial, and a resume that unpickles nothing."""
import json
import os
import pathlib
import pickle
import subprocess
import sys

import jax.numpy as jnp
import pandas as pd
import pytest
from processes import moto_server_command, s3_server

from study.storage import store
from study.storage.location import StorageError, at
from study.trial.checkpoint import Checkpoints, state_digest, steps_to_keep
from study.trial.config import TrialConfig

MOTO = moto_server_command()
ROOT = pathlib.Path(__file__).resolve().parent.parent
SMOKE_ARGV = ["--space", "smoke", "--set", "batch_size=16", "--set", "train_steps=20"]


@pytest.fixture(scope="module")
def s3():
    """An S3 API server (moto) on loopback with a bucket `bucket`; yields a study URI prefix."""
    if MOTO is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    with s3_server("bucket"):
        yield "s3://bucket"


# ---------------------------------------------------------------------------- location
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_location_reads_writes_lists_and_copies(kind, tmp_path, request):
    base = at(tmp_path / "study") if kind == "local" else at(request.getfixturevalue("s3") + f"/loc-{kind}")
    (base / "trials" / "a" / "x.json").write_json({"v": 1})
    (base / "trials" / "b" / "y.bin").write_bytes(b"12345")
    assert base.uri.startswith("s3://") == (kind == "s3")
    assert (base / "trials").children() == ["a", "b"]
    assert (base / "trials" / "a" / "x.json").read_json() == {"v": 1}
    assert base.disk_bytes() == len(json.dumps({"v": 1}, indent=2, sort_keys=True)) + 5
    (base / "trials" / "b").download(tmp_path / "copy")
    assert (tmp_path / "copy" / "y.bin").read_bytes() == b"12345"
    (base / "up").upload(tmp_path / "copy")
    assert (base / "up" / "y.bin").read_bytes() == b"12345"
    (base / "trials").delete()
    assert not (base / "trials").exists() and (base / "trials").children() == []


def test_a_bad_uri_is_one_line():
    with pytest.raises(StorageError, match="cannot be opened"):
        at("nosuchscheme://bucket/study")


# ---------------------------------------------------------------------------- checkpoints
def test_steps_to_keep_last_and_best_while_running_then_per_policy():
    scores = {10: 5.0, 20: 3.0, 30: 4.0, 40: float("nan")}
    assert steps_to_keep([10, 20, 30, 40], scores, finished=False, keep="final") == {20, 40}
    assert steps_to_keep([10, 20, 30], scores, finished=False, keep="final") == {20, 30}
    assert steps_to_keep([10, 20, 30, 40], scores, finished=True, keep="final") == {40}
    assert steps_to_keep([10, 20, 30, 40], scores, finished=True, keep="none") == set()
    assert steps_to_keep([10, 20, 30, 40], scores, finished=True, keep="all") == {10, 20, 30, 40}


def _state(value: float):
    return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _flip_a_bit_of_the_largest_file(folder: pathlib.Path) -> None:
    target = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_skipped_and_saving_continues(tmp_path, capsys):
    checkpoints = Checkpoints(tmp_path / "ckpt", keep="all")
    checkpoints.save(10, _state(1.0), {"device_seconds": 1.0})
    checkpoints.save(20, _state(2.0), {"device_seconds": 2.0})
    checkpoints.close()
    _flip_a_bit_of_the_largest_file(tmp_path / "ckpt" / "20" / "state")

    again = Checkpoints(tmp_path / "ckpt", keep="all")
    state, meta = again.restore_latest(_state(0.0))
    assert float(state["w"][0, 0]) == 1.0 and meta == {"device_seconds": 1.0}
    assert "checkpoint step 20" in capsys.readouterr().err
    again.save(20, _state(2.0), {"device_seconds": 2.0})  # no StepAlreadyExistsError
    again.close()
    state, _ = Checkpoints(tmp_path / "ckpt").restore_latest(_state(0.0))
    assert float(state["w"][0, 0]) == 2.0


def test_checkpoint_metadata_holds_the_state_digest(tmp_path):
    checkpoints = Checkpoints(tmp_path / "ckpt")
    checkpoints.save(5, _state(3.0), {})
    restored = checkpoints.manager.restore(5, args=__import__("orbax.checkpoint").checkpoint.args.Composite(
        meta=__import__("orbax.checkpoint").checkpoint.args.JsonRestore()))
    assert restored["meta"]["state_digest"] == state_digest(_state(3.0)) != state_digest(_state(3.5))
    checkpoints.close()


def test_checkpoints_on_s3_are_restored_by_another_process_scratch(s3):
    uri = s3 + "/ckpt-study/trials/t/checkpoints"
    first = Checkpoints(uri, keep="final")
    first.save(10, _state(1.0), {"k": 1})
    first.save(20, _state(2.0), {"k": 2})
    first.prune({10: 1.0, 20: 2.0}, finished=False)  # running: last (20) and best (10) stay
    assert first.steps() == [10, 20]
    (at(uri) / "30" / "state" / "part").write_bytes(b"half")  # a node lost mid-upload: no 30.committed
    assert first.steps() == [10, 20]
    first.close()  # its scratch folder is gone, as on a lost node
    second = Checkpoints(uri, keep="final")
    state, meta = second.restore_latest(_state(0.0))
    assert float(state["w"][0, 0]) == 2.0 and meta == {"k": 2}
    second.prune({}, finished=True)
    assert second.steps() == [20]
    second.close()


# ---------------------------------------------------------------------------- trial folders
def _config(**changes):
    return TrialConfig.from_dict({"penalty": "none", "penalty_weight": 0.0, "train_steps": 20, "eval_every": 10,
                                  "eval_samples": 100, "batch_size": 16, **changes})


def test_a_folder_holding_another_config_is_refused_naming_the_fields(tmp_path):
    from study.trial.loop import TrialFolderMismatch, run_trial

    (tmp_path / "config.json").write_text(json.dumps(_config(learning_rate=0.001).to_dict()))
    with pytest.raises(TrialFolderMismatch, match=r"learning_rate=0\.001 there, 0\.0002 now"):
        run_trial(_config(learning_rate=0.0002), tmp_path)
    assert not (tmp_path / "rows.parquet").exists()


def test_trial_cli_refuses_a_folder_of_another_config_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config(learning_rate=0.001).to_dict()))
    done = subprocess.run([sys.executable, "-m", "study.trial", "learning_rate=0.0002", "penalty=none",
                           "train_steps=20", "eval_every=10", "eval_samples=100", "batch_size=16",
                           f"out={tmp_path}"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "learning_rate" in lines[0] and "holds another configuration" in lines[0]


def _finished_trial(study, config, identity, steps=(10, 20)):
    rows = store.TrialRows(study / store.TRIALS_DIR / config.trial_id, identity, config)
    for step in steps:
        rows.add(step, {"score": float(step), "status": "running", "diverged": False, "error": ""})
    rows.mark_final("completed")
    (study / store.TRIALS_DIR / config.trial_id / store.CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    return rows


def test_truncated_rows_do_not_block_the_trial(tmp_path, capsys):
    config = _config()
    _finished_trial(tmp_path, config, {"study": "s"})
    path = tmp_path / store.TRIALS_DIR / config.trial_id / store.ROWS_FILE
    path.write_bytes(path.read_bytes()[:100])
    rows = store.TrialRows(path.parent, {"study": "s"}, config)
    assert rows.damaged and rows.rows == {}
    assert "unreadable" in capsys.readouterr().err


def test_a_damaged_trial_never_shrinks_results_and_is_rebuilt_from_them(tmp_path):
    identity = {"study": "s", "arm": "a"}
    good, bad = _config(seed=0), _config(seed=1)
    _finished_trial(tmp_path, good, identity)
    _finished_trial(tmp_path, bad, identity)
    assert len(store.collect(tmp_path)) == 4
    path = tmp_path / store.TRIALS_DIR / bad.trial_id / store.ROWS_FILE
    path.write_bytes(path.read_bytes()[:200])
    assert len(store.collect(tmp_path)) == 4  # the damaged trial keeps its rows in results.parquet
    assert store.finished_row(path.parent) is None
    assert store.repair_from_results(tmp_path) == [bad.trial_id]
    assert store.finished_row(path.parent)["step"] == 20


# ---------------------------------------------------------------------------- studies
def _smoke_configs():
    import search_spaces

    trials = search_spaces.expand(search_spaces.get("smoke"), {"dataset": "digits", "scale": "tiny",
                                                               "architecture": "sndcgan"})
    return [TrialConfig.from_dict({**t, "seed": 0, "batch_size": 16, "train_steps": 20}) for t in trials]


def test_a_study_missing_a_trial_exits_nonzero_and_reports_it_failed(tmp_path, monkeypatch, capsys):
    from search_spaces import arm_name
    from study.storage import location
    from study.sweep import cli as run
    from study.sweep import tune

    configs = _smoke_configs()

    def run_only_the_first(study_dir, trials, *, identity, **kwargs):
        config = TrialConfig.from_dict(trials[0])
        _finished_trial(at(study_dir).local_path, config, {**identity, "arm": arm_name(trials[0])})

    monkeypatch.setattr(tune, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(location, "check_reachable", lambda *a, **k: None)
    monkeypatch.setattr(tune, "run_grid", run_only_the_first)
    code = run.main([*SMOKE_ARGV, "--out", str(tmp_path / "s")])
    assert code == run.EXIT_MISSING
    err = capsys.readouterr().err
    assert "MISSING 1 of 2" in err and configs[1].trial_id in err
    results = pd.read_parquet(tmp_path / "s" / "results.parquet")
    final = results[results["final"]].set_index("trial_id")
    assert final.loc[configs[1].trial_id, "status"] == "failed"
    assert "no rows reached the study storage" in final.loc[configs[1].trial_id, "error"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["trials_missing"] == [configs[1].trial_id]
    assert set(manifest["disk_bytes_per_trial"]) == {c.trial_id for c in configs}
    html = (tmp_path / "s" / "report" / "index.html").read_text()
    assert "no rows reached the study storage" in html


class _Doctored:
    """Unpickling this creates a marker file: what a doctored tuner.pkl would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_unpickles_nothing_in_the_study_folder(tmp_path):
    study = tmp_path / "study"
    marker = tmp_path / "pwned"
    identity = {"study": "study", "search": "grid", "round": 0}
    from search_spaces import arm_name

    for config in _smoke_configs():
        _finished_trial(study, config, {**identity, "arm": arm_name(config.to_dict())})
    (study / "manifest.json").write_text(json.dumps({"argv": [*SMOKE_ARGV, "--no-report"], "study": "study"}))
    (study / "ray").mkdir()
    for name in ("tuner.pkl", "trainable.pkl"):
        (study / "ray" / name).write_bytes(pickle.dumps(_Doctored(marker)))
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "study.run", "--resume", str(study)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=env)
    assert not marker.exists(), "resume unpickled a file of the study folder"
    assert done.returncode == 0, done.stderr[-3000:]
    results = pd.read_parquet(study / "results.parquet")
    assert results["trial_id"].nunique() == 2 and results["status"].eq("completed").all()
