"""CelebA-HQ-128: TFRecord framing + CRC32C + Example parsing without TensorFlow, shard and folder splits."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from study import data
from study.data import celebahq, tfrecord


def reference_crc32c(payload: bytes) -> int:
    """Bit-at-a-time CRC-32C (Castagnoli, reflected 0x82F63B78), independent of the library's tables."""
    crc = 0xFFFFFFFF
    for byte in payload:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(payload: bytes) -> int:
    crc = reference_crc32c(payload)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def example(encoded_png: bytes) -> bytes:
    """tf.train.Example with image/encoded (bytes), image/format (bytes) and image/height (int64)."""
    def entry(name: str, feature: bytes) -> bytes:
        return field(1, field(1, name.encode()) + field(2, feature))

    bytes_feature = field(1, field(1, encoded_png))
    height_feature = field(3, field(1, varint(128)))  # Int64List, packed
    features = entry("image/format", field(1, field(1, b"png"))) + entry("image/encoded", bytes_feature) + entry("image/height", height_feature)
    return field(1, features)


def tfrecord_bytes(records: list[bytes]) -> bytes:
    out = b""
    for record in records:
        length = struct.pack("<Q", len(record))
        out += length + struct.pack("<I", masked(length)) + record + struct.pack("<I", masked(record))
    return out


def face(value: int) -> np.ndarray:
    image = np.zeros((128, 128, 3), np.uint8)
    image[value % 128, (3 * value) % 128] = (value, 255 - value, 7)  # a known pixel per image
    image[..., 2] += np.uint8(value)
    return image


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shards(folder, images_per_shard: dict[int, list[int]]):
    folder.mkdir(parents=True, exist_ok=True)
    for shard, values in images_per_shard.items():
        path = folder / f"image_celebahq-128-{shard:05d}-of-00100"
        path.write_bytes(tfrecord_bytes([example(png(face(v))) for v in values]))
    return folder


def test_crc32c_matches_the_check_value_and_the_reference():
    assert tfrecord.crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue check value
    payload = bytes(range(256)) * 3 + b"tail"
    for cut in (0, 1, 7, 8, 9, 100, len(payload)):
        assert tfrecord.crc32c(payload[:cut]) == reference_crc32c(payload[:cut])
    assert tfrecord.masked_crc32c(payload) == masked(payload)


def test_parse_example_returns_bytes_features():
    features = tfrecord.parse_example(example(b"\x89PNGxyz"))
    assert features["image/encoded"] == [b"\x89PNGxyz"] and features["image/format"] == [b"png"]
    assert features["image/height"] == []  # int64 features are skipped, not misread


def test_shards_split_by_index_pixel_exact(tmp_path):
    source = write_shards(tmp_path / "shards", {0: [1, 2], 1: [3], 89: [4], 90: [5, 6], 99: [7]})
    manifest = celebahq.prepare(source, tmp_path / "out", official=False, log=lambda m: None)
    assert manifest["source"]["kind"] == "tfrecord"
    train = data.load("celebahq128", "train", data_dir=str(tmp_path / "out"))
    test = data.load("celebahq128", "test", data_dir=str(tmp_path / "out"))
    assert train.shape == (4, 128, 128, 3) and test.shape == (3, 128, 128, 3)
    np.testing.assert_array_equal(train, np.stack([face(v) for v in (1, 2, 3, 4)]))
    np.testing.assert_array_equal(test, np.stack([face(v) for v in (5, 6, 7)]))
    assert tuple(test[1, 6, 18]) == (6, 249, 13)  # face(6)'s marked pixel, blue shifted by 6
    assert data.load("celebahq128", "test", image_size=32, data_dir=str(tmp_path / "out")).shape == (3, 32, 32, 3)


def test_corrupted_crc_names_the_shard(tmp_path):
    source = write_shards(tmp_path / "shards", {0: [1, 2], 95: [3]})
    shard = source / "image_celebahq-128-00000-of-00100"
    raw = bytearray(shard.read_bytes())
    raw[40] ^= 0xFF  # a byte inside the first record's data
    shard.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=rf"{shard}: data CRC mismatch in the record at byte 0"):
        celebahq.prepare(source, tmp_path / "out", official=False)
    raw = bytearray(tfrecord_bytes([example(png(face(1)))]))
    raw[8] ^= 1  # the length CRC
    shard.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="length CRC mismatch at byte 0"):
        celebahq.prepare(source, tmp_path / "out", official=False)
    shard.write_bytes(tfrecord_bytes([example(png(face(1)))])[:-10])
    with pytest.raises(data.DataError, match="truncated record at byte 0"):
        celebahq.prepare(source, tmp_path / "out", official=False)


def test_official_mode_wants_every_shard_and_enough_test_images(tmp_path):
    source = write_shards(tmp_path / "shards", {0: [1], 90: [2]})
    with pytest.raises(data.DataError, match=r"shards \[1, 2, .*missing; expected all 100"):
        celebahq.prepare(source, tmp_path / "out")
    full = write_shards(tmp_path / "full", {i: [i] for i in range(100)})
    with pytest.raises(data.DataError, match="test split of 10 images, smaller than the paper's 3000 FID samples"):
        celebahq.prepare(full, tmp_path / "out", log=lambda m: None)


def test_image_folder_split_rule_and_resize(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(20):  # last ceil(20/10) = 2 by name are test; JPEG and PNG mixed, one at 256 px
        image = face(i)
        if i == 19:
            Image.fromarray(np.repeat(np.repeat(image, 2, 0), 2, 1)).save(folder / f"{i:05d}.png")
        elif i % 2:
            Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=95)
        else:
            Image.fromarray(image).save(folder / f"{i:05d}.png")
    (folder / "notes.txt").write_text("not an image")
    assert celebahq.folder_split(30_000) == 3_000
    manifest = celebahq.prepare(folder, tmp_path / "out", official=False, log=lambda m: None)
    assert manifest["splits"]["train"]["count"] == 18 and manifest["splits"]["test"]["count"] == 2
    test = data.load("celebahq128", "test", data_dir=str(tmp_path / "out"))
    np.testing.assert_array_equal(test[1], face(19))  # 2x nearest upscale, BOX-downscaled back exactly
    np.testing.assert_array_equal(data.load("celebahq128", "train", data_dir=str(tmp_path / "out"))[0], face(0))


def test_bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match=rf"{empty}: zero images"):
        celebahq.prepare(empty, tmp_path / "out", official=False)
    (empty / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(data.DataError, match=r"00000.png: corrupt png image"):
        celebahq.prepare(empty, tmp_path / "out", official=False)
    with pytest.raises(data.DataError, match="not a folder"):
        celebahq.prepare(tmp_path / "nope", tmp_path / "out")
