"""Issue 19, items 3 (reused folders), 6 (fail fast) and 7 (one line, not a traceback):
each probe of bad input or a fault ends in exactly one `error:` line naming the bad
value, with a nonzero exit, before any training, Ray start or feature extraction, and
leaves what was there untouched."""
import contextlib
import errno
import json
import os
import socket
import subprocess
import time

import numpy as np
import pytest

from analysis import report
from study.data import __main__ as data_cli
from study.metrics import fid as fid_cli
from study.sweep import cli as study_run
from study.trial import cli as study_trial
from study.trial import config


def _one_error_line(capsys, *fragments, after_progress=False):
    """The one `error:` line of stderr (with after_progress, progress lines may come
    before it, but it is the last line)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    assert after_progress or len(lines) == 1, err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture
def places(tmp_path):
    """A file, a folder holding someone's files, and a read-only folder (None when this
    machine cannot make one: root ignores permission bits, so a read-only tmpfs is used)."""
    file = tmp_path / "file.txt"
    file.write_text("someone's file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.parquet").write_text("someone's results")
    (foreign / "report").mkdir()
    (foreign / "report" / "index.html").write_text("<html>someone's page</html>")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)],
                                 capture_output=True).returncode == 0
    else:
        readonly.chmod(0o555)
    ok = mounted or (os.geteuid() != 0)
    yield {"file": file, "foreign": foreign, "readonly": readonly if ok else None}
    if mounted:
        subprocess.run(["umount", str(readonly)], capture_output=True)
    else:
        readonly.chmod(0o755)


# ----------------------------------------------------------------------- numbers (config)
@pytest.mark.parametrize("field, text", [("train_steps", "inf"), ("train_steps", "1e400"),
                                         ("batch_size", "nan"), ("eval_every", "-inf"),
                                         ("learning_rate", "1e400")])
def test_non_finite_numbers_name_the_field_and_the_typed_value(field, text):
    with pytest.raises(config.ConfigError, match=f"^{field}='{text}' is not allowed; expected a finite"):
        config.TrialConfig.from_dict({field: text}, coerce_strings=True)


def test_non_finite_integer_from_data_is_a_config_error_not_overflow():
    for value in (float("inf"), float("nan"), 10**400):
        with pytest.raises(config.ConfigError, match="train_steps=.* is not allowed; expected an integer"):
            config.TrialConfig.from_dict({"train_steps": value})


# ----------------------------------------------------------------------- study.trial
@pytest.mark.parametrize("args, fragments", [
    (["train_steps=inf"], ["train_steps='inf'", "finite integer"]),
    (["train_steps=1e400"], ["train_steps='1e400'"]),
    (["batch_size=nan"], ["batch_size='nan'"]),
    (["loss=bogus", "loss=ns"], ["loss is given twice", "'bogus'", "'ns'"]),
    (["out=A", "out=B"], ["out is given twice"]),
    (["out="], ["out= is empty"]),
])
def test_trial_cli_refuses_in_one_line(args, fragments, capsys):
    assert study_trial.main(args) == 2
    _one_error_line(capsys, *fragments)


@pytest.mark.parametrize("where", ["file", "under_file", "readonly"])
def test_trial_out_must_be_a_writable_folder(where, places, capsys):
    target = {"file": places["file"], "under_file": places["file"] / "x",
              "readonly": places["readonly"] and places["readonly"] / "t"}[where]
    if target is None:
        pytest.skip("no read-only folder can be made here")
    assert study_trial.main(["train_steps=10", f"out={target}"]) == 2
    _one_error_line(capsys, f"out={target}")


# ----------------------------------------------------------------------- study.run
@pytest.mark.parametrize("args, fragments", [
    (["--set", "train_steps=inf"], ["train_steps='inf'"]),
    (["--set", "train_steps=1e400"], ["train_steps='1e400'"]),
    (["--set", "batch_size=nan"], ["batch_size='nan'"]),
    (["--set", "loss=ns", "--set", "loss=wgan"], ["loss is given twice", "'ns'", "'wgan'"]),
    (["--out", ""], ["--out is empty"]),
])
def test_run_cli_refuses_in_one_line(args, fragments, capsys):
    assert study_run.main(["--space", "smoke", *args]) == 2
    _one_error_line(capsys, *fragments)


def test_a_key_given_twice_is_one_line_the_same_in_every_command_line(capsys):
    """study.run's --set (a grid and a Bayesian space), the Bayesian rounds' own --set check
    and study.trial's KEY=VALUE refuse a repeated key with the same line (one parser)."""
    from study.sweep import bayes

    expected = "error: train_steps is given twice (train_steps='10' and train_steps='20'); give it once"
    twice = ["train_steps=10", "train_steps=20"]
    lines = []
    for space in ("smoke", "table2"):
        assert study_run.main(["--space", space, "--dry-run", "--set", twice[0], "--set", twice[1]]) == 2
        lines.append(_one_error_line(capsys))
    assert study_trial.main(twice) == 2
    lines.append(_one_error_line(capsys))
    with pytest.raises(bayes.BayesError) as refused:  # study.run prints a BayesError as "error: ..."
        bayes._parse_overrides(twice, {"learning_rate", "seed"})
    lines.append(f"error: {refused.value}")
    assert lines == [expected] * 4


@pytest.mark.parametrize("where", ["file", "under_file", "readonly", "foreign"])
def test_run_out_must_be_a_new_or_empty_writable_folder(where, places, capsys):
    target = {"file": places["file"], "under_file": places["file"] / "x", "foreign": places["foreign"],
              "readonly": places["readonly"] and places["readonly"] / "s"}[where]
    if target is None:
        pytest.skip("no read-only folder can be made here")
    assert study_run.main(["--space", "smoke", "--out", str(target), "--no-report"]) == 2
    _one_error_line(capsys, f"--out {target}")
    # Nothing was written over someone's files.
    assert (places["foreign"] / "results.parquet").read_text() == "someone's results"
    assert sorted(p.name for p in places["foreign"].iterdir()) == ["report", "results.parquet"]


@pytest.mark.parametrize("content, fragment", [
    ({"space": "smoke"}, "records no command line"),
    ([1, 2], "records no command line"),
    ("{\"argv\": [", "is not readable JSON"),
])
def test_resume_names_a_bad_manifest(content, fragment, tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content if isinstance(content, str) else json.dumps(content))
    assert study_run.main(["--resume", str(tmp_path)]) == 2
    _one_error_line(capsys, str(manifest), fragment)


def test_unprepared_dataset_is_refused_before_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAN_STUDY_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "study"
    assert study_run.main(["--space", "smoke", "--dataset", "cifar10", "--out", str(out)]) == 2
    _one_error_line(capsys, "cifar10 is not prepared", "python -m study.data prepare cifar10")
    assert not out.exists()


def test_unreachable_address_fails_fast_and_leaves_no_manifest(tmp_path, capsys):
    with contextlib.closing(socket.socket()) as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "study"
    started = time.time()
    assert study_run.main(["--space", "smoke", "--address", f"127.0.0.1:{port}", "--out", str(out)]) == 2
    assert time.time() - started < 30
    _one_error_line(capsys, f"--address 127.0.0.1:{port}", "ray start --head")
    assert not (out / "manifest.json").exists()


def test_full_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    from study.sweep import tune

    def disk_full(study_dir, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(study_dir / "trials" / "x" / "rows.parquet"))

    from study.storage import location

    monkeypatch.setattr(tune, "init_ray", lambda address: None)
    monkeypatch.setattr(location, "check_reachable", lambda study: None)  # needs the Ray this test skips
    monkeypatch.setattr(tune, "run_grid", disk_full)
    out = tmp_path / "study"
    assert study_run.main(["--space", "smoke", "--out", str(out), "--no-report"]) == 1
    _one_error_line(capsys, "no space left", str(out), f"--resume {out}", after_progress=True)
    assert "finished" not in json.loads((out / "manifest.json").read_text())


def test_full_disk_message_is_only_for_full_disks(tmp_path):
    from study.storage import paths

    assert paths.disk_full_message(OSError(errno.EACCES, "denied"), tmp_path) is None
    assert str(tmp_path) in paths.disk_full_message(OSError(errno.ENOSPC, "full"), tmp_path)


# ----------------------------------------------------------------------- analysis.report
def test_report_bootstrap_must_be_positive(tmp_path, capsys):
    for value in ("-5", "0"):
        assert report.main([str(tmp_path), "--bootstrap", value]) == 2
        _one_error_line(capsys, f"--bootstrap {value}")


@pytest.mark.parametrize("where", ["file", "under_file", "readonly", "foreign_index"])
def test_report_out_refuses_unwritable_and_foreign_folders(where, places, tmp_path, capsys):
    target = {"file": places["file"], "under_file": places["file"] / "x",
              "foreign_index": places["foreign"] / "report",
              "readonly": places["readonly"] and places["readonly"] / "r"}[where]
    if target is None:
        pytest.skip("no read-only folder can be made here")
    assert report.main([str(tmp_path), "--out", str(target)]) == 2
    _one_error_line(capsys, f"--out {target}")
    assert (places["foreign"] / "report" / "index.html").read_text() == "<html>someone's page</html>"


# ----------------------------------------------------------------------- study.metrics.fid
def test_fid_cli_checks_inputs_before_any_work(tmp_path, capsys):
    import torch
    from PIL import Image

    two = tmp_path / "two.npy"
    np.save(two, np.zeros((2, 8, 8, 3), np.uint8))
    np.save(tmp_path / "one.npy", np.zeros((1, 8, 8, 3), np.uint8))
    np.save(tmp_path / "zero.npy", np.zeros((0, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "pngs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "pngs" / "a.png")
    (tmp_path / "pngs" / "b.png").write_text("not an image")
    torch.save({"a": 1}, tmp_path / "bad.pth")
    (tmp_path / "file.txt").write_text("x")
    bad = str(tmp_path / "bad.pth")
    probes = [
        ([str(tmp_path / "empty.npz"), str(two)], ["empty.npz holds no arrays"]),
        ([str(tmp_path / "pngs"), str(two)], ["b.png is not a readable image"]),
        ([str(tmp_path / "zero.npy"), str(two)], ["zero.npy holds 0 image(s)", "at least 2"]),
        ([str(two), str(tmp_path / "one.npy")], ["one.npy holds 1 image(s)"]),
        ([str(two), str(two), "--weights", bad], ["bad.pth is not the FID Inception state dict"]),
        ([str(two), str(two), "--weights", bad, "--features-out", str(tmp_path / "file.txt" / "f.npy")],
         ["--features-out", "is not an existing folder"]),
        ([str(two), str(two), "--weights", bad, "--features-out", str(tmp_path)], ["is a folder"]),
    ]
    for args, fragments in probes:
        assert fid_cli.main(args) == 2, args
        _one_error_line(capsys, *fragments)


# ----------------------------------------------------------------------- study.data
def test_data_info_names_the_prepare_command_for_a_damaged_manifest(tmp_path, capsys):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "manifest.json").write_text("{damaged")
    assert data_cli.main(["info", "--data-dir", str(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cifar10"))
    assert "run `python -m study.data prepare cifar10 --from" in line and "run `` again" not in line


@pytest.mark.parametrize("command", ["prepare", "download"])
def test_data_to_must_be_a_writable_folder(command, places, capsys):
    args = [command, "cifar10", "--to", str(places["file"] / "x")]
    if command == "prepare":
        args += ["--from", str(places["file"])]
    assert data_cli.main(args) == 2
    _one_error_line(capsys, f"--to {places['file'] / 'x'}")
