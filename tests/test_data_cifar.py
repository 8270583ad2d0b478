"""CIFAR-10 python batches: official pickle layout, restricted unpickling, checksums, prepare/load."""
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from study import data
from study.data import cifar10
from study.data.__main__ import main as cli
from study.data.safe_pickle import safe_loads


def _short_str(text: bytes) -> bytes:
    assert len(text) < 256
    return b"U" + bytes([len(text)]) + text


def py2_batch_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch exactly as Python 2 cPickle (protocol 2) + numpy 1 wrote the official files:
    str keys as SHORT_BINSTRING, the array via numpy.core.multiarray._reconstruct."""
    assert rows.dtype == np.uint8 and rows.ndim == 2
    raw = rows.tobytes()
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _short_str(b"b") + b"\x87R"
        + b"(K\x01" + b"J" + struct.pack("<i", rows.shape[0]) + b"J" + struct.pack("<i", rows.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + _short_str(b"u1") + b"K\x00K\x01\x87R"
        + b"(K\x03" + _short_str(b"|") + b"NNNJ" + struct.pack("<i", -1) + b"J" + struct.pack("<i", -1) + b"K\x00tb"
        + b"\x89" + b"T" + struct.pack("<I", len(raw)) + raw + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + _short_str(b"batch_label") + _short_str(b"training batch 1 of 5")
        + _short_str(b"data") + array + _short_str(b"labels") + label_list + b"u."
    )


def planar_rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3072), dtype=np.uint8)


def write_release(folder, rows_per_file=4, seed=0):
    """cifar-10-batches-py/ with the six batches (py2 pickles) + a tarball of it; returns (dir, tar, rows)."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rows = {}
    for i, name in enumerate(cifar10.TRAIN_FILES + cifar10.TEST_FILES):
        rows[name] = planar_rows(rows_per_file + (i == 5), seed + i)
        (batches / name).write_bytes(py2_batch_pickle(rows[name], [i % 10] * len(rows[name])))
    tar_path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(batches, arcname="cifar-10-batches-py")
    return batches, tar_path, rows


def test_py2_pickle_reads_and_planes_land_in_channels():
    rows = np.zeros((2, 3072), np.uint8)
    rows[1, 0 * 1024 + 1 * 32 + 2] = 201  # red plane, y=1, x=2
    rows[1, 1 * 1024 + 3 * 32 + 4] = 202  # green plane, y=3, x=4
    rows[1, 2 * 1024 + 5 * 32 + 6] = 203  # blue plane, y=5, x=6
    images = cifar10.decode_batch(py2_batch_pickle(rows, [3, 7]), "batch", official=False)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert images[1, 1, 2, 0] == 201 and images[1, 3, 4, 1] == 202 and images[1, 5, 6, 2] == 203
    assert int(images.sum()) == 201 + 202 + 203


def test_bytes_keys_from_python3_pickles_are_accepted():
    rows = planar_rows(3, 1)
    for protocol in (2, 3, 4, 5):
        payload = pickle.dumps({b"data": rows, b"labels": [1, 2, 3], b"filenames": [b"a.png"] * 3}, protocol=protocol)
        images = cifar10.decode_batch(payload, "batch", official=False)
        np.testing.assert_array_equal(images, rows.reshape(3, 3, 32, 32).transpose(0, 2, 3, 1))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if executed


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Evil(marker), "labels": []}, protocol=2)
    with pytest.raises(data.DataError, match=r"evil_batch: refused to unpickle global .*open"):
        safe_loads(payload, "evil_batch")
    assert not marker.exists()
    # a global beyond array reconstruction, even from numpy, is refused too
    with pytest.raises(data.DataError, match="numpy.load"):
        safe_loads(b"\x80\x02cnumpy\nload\n.", "x")


def test_truncated_pickle_is_a_clear_error():
    payload = py2_batch_pickle(planar_rows(2, 0), [0, 1])
    with pytest.raises(data.DataError, match="cut: not a readable pickle"):
        safe_loads(payload[: len(payload) // 2], "cut")


def test_prepare_from_tarball_and_folder_round_trip(tmp_path):
    batches, tar_path, rows = write_release(tmp_path / "dl")
    for source in (tar_path, batches):
        out = tmp_path / f"out_{source.name}"
        manifest = cifar10.prepare(source, out, official=False, log=lambda m: None)
        assert manifest["splits"]["train"]["count"] == 20 and manifest["splits"]["test"]["count"] == 5
        train = data.load("cifar10", "train", data_dir=str(out))
        test = data.load("cifar10", "test", data_dir=str(out))
        assert isinstance(train, np.memmap) and train.shape == (20, 32, 32, 3)
        expected = np.concatenate([rows[n] for n in cifar10.TRAIN_FILES]).reshape(20, 3, 32, 32).transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(train, expected)
        np.testing.assert_array_equal(test[2, 7, 9], rows["test_batch"][2, [7 * 32 + 9, 1024 + 7 * 32 + 9, 2048 + 7 * 32 + 9]])
        assert manifest["source"]["md5"]["data_batch_1"] == hashlib.md5((batches / "data_batch_1").read_bytes()).hexdigest()
        # Labels are stored per split, aligned with the images (write_release labels file i with i % 10).
        for split, names in (("train", cifar10.TRAIN_FILES), ("test", cifar10.TEST_FILES)):
            expected_labels = np.concatenate([[cifar10.TRAIN_FILES.index(n) if n in cifar10.TRAIN_FILES else 5]
                                              * len(rows[n]) for n in names])
            labels = data.labels("cifar10", split, data_dir=str(out))
            assert labels.dtype == np.int32
            np.testing.assert_array_equal(labels, expected_labels)
        assert manifest["splits"]["train"]["labels"]["count"] == 20
    assert data.info("cifar10").num_classes == 10
    small = data.load("cifar10", "train", image_size=16, data_dir=str(out))
    assert small.shape == (20, 16, 16, 3) and small.dtype == np.uint8
    assert list((out / "cifar10").glob("train_16px_*.npy"))


def test_cifar_prepared_before_labels_were_stored_says_to_prepare_again(tmp_path):
    import json

    _, tar_path, _ = write_release(tmp_path / "dl")
    cifar10.prepare(tar_path, tmp_path / "out", official=False, log=lambda m: None)
    manifest_path = tmp_path / "out" / "cifar10" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["splits"].values():
        del entry["labels"]  # the manifest an earlier prepare wrote
    manifest_path.write_text(json.dumps(manifest))
    assert data.load("cifar10", "test", data_dir=str(tmp_path / "out")).shape == (5, 32, 32, 3)  # images still load
    with pytest.raises(data.DataError, match=r"cifar10 was prepared without class labels .* run `python -m study.data "
                                             r"prepare cifar10 --from PATH/cifar-10-python.tar.gz` again"):
        data.labels("cifar10", "train", data_dir=str(tmp_path / "out"))


def test_official_mode_checks_published_checksums(tmp_path):
    batches, tar_path, _ = write_release(tmp_path / "dl")
    with pytest.raises(data.DataError, match=rf"{tar_path}: md5 [0-9a-f]{{32}}, expected the published c58f3010"):
        cifar10.prepare(tar_path, tmp_path / "out", log=lambda m: None)
    with pytest.raises(data.DataError, match=r"data_batch_1 has md5 [0-9a-f]{32}, expected c99cafc1"):
        cifar10.prepare(batches, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out" / "cifar10" / "manifest.json").exists()


def test_bad_sources_name_the_path(tmp_path):
    batches, tar_path, _ = write_release(tmp_path / "dl")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(tar_path.read_bytes()[:2000])
    with pytest.raises(data.DataError, match=rf"{truncated}: truncated or not a tar.gz"):
        cifar10.prepare(truncated, tmp_path / "out", official=False)
    (batches / "data_batch_3").unlink()
    with pytest.raises(data.DataError, match=r"missing data_batch_3"):
        cifar10.prepare(batches, tmp_path / "out", official=False)
    with pytest.raises(data.DataError, match=r"cifar10 is not prepared: looked for .*nothing/cifar10/manifest.json; run `python -m study.data prepare cifar10"):
        data.load("cifar10", "train", data_dir=str(tmp_path / "nothing"))


def test_truncated_prepared_split_is_refused(tmp_path):
    _, tar_path, _ = write_release(tmp_path / "dl")
    cifar10.prepare(tar_path, tmp_path / "out", official=False, log=lambda m: None)
    split = tmp_path / "out" / "cifar10" / "train.npy"
    split.write_bytes(split.read_bytes()[:-3072])
    with pytest.raises(data.DataError, match="train.npy: not a readable .npy file|truncated or stale"):
        data.load("cifar10", "train", data_dir=str(tmp_path / "out"))


def test_split_smaller_than_fid_count_is_a_clear_error(tmp_path):
    _, tar_path, _ = write_release(tmp_path / "dl")
    cifar10.prepare(tar_path, tmp_path / "out", official=False, log=lambda m: None)
    with pytest.raises(data.DataError, match="test split has 5 images .*fewer than the 10000 required"):
        data.load("cifar10", "test", data_dir=str(tmp_path / "out"), min_images=data.info("cifar10").fid_samples)


def test_cli_prepare_and_errors(tmp_path, capsys):
    _, tar_path, _ = write_release(tmp_path / "dl")
    assert cli(["prepare", "cifar10", "--from", str(tar_path), "--to", str(tmp_path / "out"), "--unofficial"]) == 0
    assert "cifar10 prepared (train 20, test 5)" in capsys.readouterr().out
    assert cli(["prepare", "cifar10", "--from", str(tmp_path / "missing.tar.gz"), "--to", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tar.gz: no such file or folder" in err
    assert cli(["info", "--data-dir", str(tmp_path / "out")]) == 0
    listing = capsys.readouterr().out
    assert "[prepared: test 5, train 20, unofficial]" in listing and "lsun_bedroom" in listing
