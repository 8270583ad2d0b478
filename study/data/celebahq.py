"""CelebA-HQ at 128x128 (30,000 faces; the paper's split is 27,000 train / 3,000 test).

Two accepted sources:
(a) The TFRecord shards the paper's code read, `image_celebahq-128-000NN-of-00100`
    (spec §8: shards 0-89 train, 90-99 test), each record a tf.train.Example whose
    `image/encoded` bytes are a 128x128x3 PNG. Read without TensorFlow; CRCs checked.
(b) A folder of PNG/JPEG images (e.g. the 30,000 files of the CelebA-HQ release,
    00000.png ... 29999.png). Rule: files sorted by name; the last 10% form the test
    split (ceil(N/10): 3,000 of 30,000, matching the paper's count) and the rest train.
    Images that are not 128x128 are downscaled with PIL BOX filtering, which for a
    power-of-two factor (1024 -> 128) is the 2x2 averaging cascade of the progressive-GAN
    dataset tool that produced CelebA-HQ's lower resolutions, up to rounding.
"""
from __future__ import annotations

import math
import pathlib
import re

import numpy as np
from PIL import Image

from study.data import storage
from study.data.errors import DataError
from study.data.images import decode_rgb
from study.data.tfrecord import parse_example, read_records

NAME = "celebahq128"
SIZE = 128
TOTAL = 30_000
TEST_SIZE = 3_000
FID_SAMPLES = 3_000
NUM_SHARDS = 100
FIRST_TEST_SHARD = 90
SHARD_PATTERN = re.compile(r"image_celebahq-128-(\d{5})-of-(\d{5})$")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FEATURE = "image/encoded"
PREPARE_HINT = f"python -m study.data prepare {NAME} --from FOLDER_WITH_SHARDS_OR_IMAGES"


def _to_128(image: np.ndarray, where: str) -> np.ndarray:
    if image.shape[:2] == (SIZE, SIZE):
        return image
    if image.shape[0] != image.shape[1]:
        raise DataError(f"{where}: {image.shape[1]}x{image.shape[0]} image, expected a square CelebA-HQ face")
    return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BOX))


def find_shards(folder: pathlib.Path) -> dict[int, pathlib.Path]:
    """{shard index: path} of the `image_celebahq-128-NNNNN-of-00100` files in `folder`."""
    shards = {}
    for path in folder.iterdir():
        match = SHARD_PATTERN.search(path.name)
        if match and path.is_file():
            if int(match.group(2)) != NUM_SHARDS:
                raise DataError(f"{path}: a shard of {int(match.group(2))}, expected -of-{NUM_SHARDS:05d}")
            shards[int(match.group(1))] = path
    return shards


def shard_images(path: pathlib.Path) -> list[np.ndarray]:
    """The 128x128x3 images of one shard, in record order."""
    images = []
    for number, record in enumerate(read_records(path)):
        where = f"{path} record {number}"
        encoded = parse_example(record, where).get(FEATURE)
        if not encoded:
            raise DataError(f"{where}: no '{FEATURE}' bytes feature; expected a CelebA-HQ PNG Example")
        image = decode_rgb(encoded[0], where)
        if image.shape != (SIZE, SIZE, 3):
            raise DataError(f"{where}: image of shape {image.shape}, expected (128, 128, 3)")
        images.append(image)
    return images


def folder_split(count: int) -> int:
    """Test-split size of an image folder of `count` files: the last ceil(count / 10)."""
    return math.ceil(count / 10)


def prepare(source, data_dir=None, official: bool = True, log=print) -> dict:
    """Convert shards or an image folder at `source` into the prepared format; returns the manifest.

    official=True demands all 100 shards (or 30,000 images) and a test split of at least
    the paper's 3,000 FID samples.
    """
    source = pathlib.Path(source).expanduser()
    if not source.is_dir():
        raise DataError(f"{source}: not a folder; expected the image_celebahq-128-*-of-00100 shards or a folder of PNG/JPEG images")
    shards = find_shards(source)
    directory = storage.data_root(data_dir) / NAME
    checksums = {}
    if shards:
        missing = sorted(set(range(NUM_SHARDS)) - set(shards))
        if official and missing:
            raise DataError(f"{source}: shards {missing[:10]}{'...' if len(missing) > 10 else ''} missing; expected all 100 image_celebahq-128-*-of-00100 files")
        by_split = {"train": [], "test": []}
        for index in sorted(shards):
            checksums[shards[index].name] = storage.file_digest(shards[index], "md5")
            by_split["train" if index < FIRST_TEST_SHARD else "test"].extend(shard_images(shards[index]))
        kind, rule = "tfrecord", "shards 0-89 train, 90-99 test (compare_gan v2)"
    else:
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{source}: zero images; expected image_celebahq-128-*-of-00100 shards or *.png/*.jpg files")
        if official and len(files) != TOTAL:
            raise DataError(f"{source}: {len(files)} images, expected the {TOTAL} of CelebA-HQ")
        test_count = folder_split(len(files))
        images = [_to_128(decode_rgb(path.read_bytes(), str(path)), str(path)) for path in files]
        by_split = {"train": images[: len(files) - test_count], "test": images[len(files) - test_count :]}
        checksums = {"files": len(files), "first": files[0].name, "last": files[-1].name}
        kind, rule = "image folder", "files sorted by name; last ceil(N/10) test, the rest train"
    for split, images in by_split.items():
        if not images:
            raise DataError(f"{source}: the {split} split is empty ({rule})")
    if official and len(by_split["test"]) < FID_SAMPLES:
        raise DataError(f"{source}: test split of {len(by_split['test'])} images, smaller than the paper's {FID_SAMPLES} FID samples")
    splits = {}
    for split, images in by_split.items():
        splits[split] = storage.write_split(directory, split, len(images), (SIZE, SIZE, 3), [np.stack(images)])
        log(f"{NAME} {split}: {len(images)} images -> {directory / splits[split]['file']}")
    manifest = {
        "dataset": NAME,
        "format_version": storage.FORMAT_VERSION,
        "official": official,
        "source": {"path": str(source), "kind": kind, "md5": checksums},
        "split_rule": rule,
        "splits": splits,
        "preprocessing": "PNG decode; non-128 square images downscaled with PIL BOX",
    }
    storage.write_json_atomic(manifest, directory / "manifest.json")
    return manifest


def load(split: str, image_size: int, data_dir) -> np.ndarray:
    return storage.load_prepared(NAME, split, image_size, data_dir, PREPARE_HINT)
