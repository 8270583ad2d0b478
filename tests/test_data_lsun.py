"""LSUN Bedroom: LMDB of 40-hex keys with WebP/JPEG values, crop-or-pad to 128, split rule."""
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

lmdb = pytest.importorskip("lmdb")

from study import data  # noqa: E402
from study.data import lsun  # noqa: E402
from study.data.images import center_crop_or_pad  # noqa: E402


def bedroom(index: int, height: int, width: int) -> np.ndarray:
    """Flat colour per image with a marker at the centre, so lossy codecs keep it recognisable."""
    image = np.full((height, width, 3), (index * 20 % 256, 100, 200 - index), np.uint8)
    image[height // 2 - 8 : height // 2 + 8, width // 2 - 8 : width // 2 + 8] = (255, 255, 255)
    return image


def encode(image: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "webp":
        Image.fromarray(image).save(buffer, format="WEBP", lossless=True)
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_lmdb(folder, images: list[np.ndarray], kinds: list[str]) -> tuple[list[int], list[bytes]]:
    """An LMDB like the official export: key = sha1-like 40 hex digits.
    Returns (image indices in sorted key order, encoded values by image index)."""
    env = lmdb.open(str(folder), map_size=1 << 26, subdir=True)
    keys, values = [], []
    with env.begin(write=True) as txn:
        for i, (image, kind) in enumerate(zip(images, kinds)):
            key = hashlib.sha1(str(i).encode()).hexdigest().encode()
            values.append(encode(image, kind))
            txn.put(key, values[-1])
            keys.append((key, i))
    env.close()
    return [i for _, i in sorted(keys)], values


def test_crop_or_pad_matches_tf_semantics():
    image = np.arange(5 * 8, dtype=np.uint8).reshape(5, 8, 1)
    out = center_crop_or_pad(image, 4)  # crop width 8 -> 4 at offset 2, pad height 5 -> 4: crop at offset 0
    np.testing.assert_array_equal(out[..., 0], image[0:4, 2:6, 0])
    small = np.full((2, 3, 1), 9, np.uint8)
    padded = center_crop_or_pad(small, 6)  # pad offsets (6-2)//2 = 2 rows, (6-3)//2 = 1 column
    assert padded[2:4, 1:4].min() == 9 and padded.sum() == 9 * 6
    assert center_crop_or_pad(np.zeros((256, 341, 3), np.uint8), 128).shape == (128, 128, 3)


def test_lmdb_with_webp_and_jpeg_values(tmp_path):
    shapes = [(256, 341), (341, 256), (256, 256), (100, 120), (256, 300)]
    kinds = ["webp", "jpeg", "webp", "jpeg", "webp"]
    originals = [bedroom(i, *shape) for i, shape in enumerate(shapes)]
    order, values = write_lmdb(tmp_path / "bedroom_train_lmdb", originals, kinds)
    assert lsun.test_size(5) == 1 and lsun.test_size(lsun.TOTAL_FULL) == 30_588 and lsun.test_size(300_000) == 3_000
    manifest = lsun.prepare(tmp_path / "bedroom_train_lmdb", tmp_path / "out", official=False, log=lambda m: None, workers=2)
    assert manifest["splits"]["train"]["count"] == 4 and manifest["splits"]["test"]["count"] == 1
    images = np.concatenate([data.load("lsun_bedroom", s, data_dir=str(tmp_path / "out")) for s in ("train", "test")])
    assert images.shape == (5, 128, 128, 3)
    for got, index in zip(images, order):  # key order, crop-or-pad of the decoded image
        decoded = np.asarray(Image.open(io.BytesIO(values[index])).convert("RGB"))
        np.testing.assert_array_equal(got, center_crop_or_pad(decoded, 128))
        if kinds[index] == "webp":  # lossless: the original pixels themselves
            np.testing.assert_array_equal(got, center_crop_or_pad(originals[index], 128))
        assert got[64, 64].min() > 240  # the white centre marker stays at the centre
    padded = images[order.index(3)]  # 100x120 padded: (128-100)//2 = 14 black rows, (128-120)//2 = 4 black columns
    assert padded[:14].max() == 0 and padded[114:].max() == 0 and padded[:, :4].max() == 0 and padded[:, 124:].max() == 0
    assert padded[14:114, 4:124].min() > 0


def test_corrupt_and_unknown_values_name_the_key(tmp_path):
    folder = tmp_path / "lmdb"
    env = lmdb.open(str(folder), map_size=1 << 24, subdir=True)
    key = b"a" * 40
    with env.begin(write=True) as txn:
        txn.put(b"b" * 40, encode(bedroom(0, 130, 130), "webp"))
        txn.put(key, b"RIFF\x00\x00\x00\x00WEBPbroken")
    env.close()
    with pytest.raises(data.DataError, match=rf"data.mdb key {'a' * 40}: corrupt webp image"):
        lsun.prepare(folder, tmp_path / "out", official=False, log=lambda m: None)
    env = lmdb.open(str(folder), map_size=1 << 24, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, b"GIF89a....")
    env.close()
    with pytest.raises(data.DataError, match="not a WebP, JPEG or PNG image"):  # in-process decoding path
        lsun.prepare(folder, tmp_path / "out", official=False, log=lambda m: None, workers=1)


def test_official_checks_and_missing_lmdb(tmp_path):
    write_lmdb(tmp_path / "lmdb", [bedroom(0, 128, 128)] * 3, ["webp"] * 3)
    with pytest.raises(data.DataError, match="3 records, expected the official 3033042"):
        lsun.prepare(tmp_path / "lmdb", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match=r"empty: no data.mdb; expected the official LSUN"):
        lsun.prepare(tmp_path / "empty", tmp_path / "out")
    env = lmdb.open(str(tmp_path / "zero"), map_size=1 << 20, subdir=True)
    env.close()
    with pytest.raises(data.DataError, match="zero images"):
        lsun.prepare(tmp_path / "zero", tmp_path / "out", official=False)
