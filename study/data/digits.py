"""The embedded default dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grayscale scans (16 grey levels) of the UCI "Optical Recognition of
Handwritten Digits" test set, shipped inside scikit-learn (BSD-3 licence; data CC BY 4.0),
so the main command and the tests run offline on real images. Split: a fixed
permutation (numpy RandomState(0), stable across numpy versions) whose last 300
images are the test split and the first 1,497 the train split. Images are scaled to
uint8 ([0, 16] -> [0, 255]) and bilinearly resized to the architecture's resolution.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from study import data

TEST_SIZE = 300
TOTAL = 1797


@functools.lru_cache(maxsize=8)
def _images(split: str, image_size: int) -> np.ndarray:
    from sklearn.datasets import load_digits  # scikit-learn loads (~1 s) only when the digits are read

    raw = load_digits().images  # [1797, 8, 8] float in [0, 16]
    order = np.random.RandomState(0).permutation(len(raw))
    chosen = order[: TOTAL - TEST_SIZE] if split == "train" else order[TOTAL - TEST_SIZE :]
    as_uint8 = np.rint(raw[chosen] * (255.0 / 16.0)).astype(np.uint8)
    if image_size != 8:
        as_uint8 = np.stack(
            [np.asarray(Image.fromarray(img, mode="L").resize((image_size, image_size), Image.BILINEAR)) for img in as_uint8]
        )
    out = as_uint8[..., None]
    out.setflags(write=False)
    return out


def _load(split: str, image_size: int, data_dir: str | None) -> np.ndarray:
    return _images(split, int(image_size))


@functools.lru_cache(maxsize=2)
def _labels(split: str) -> np.ndarray:
    from sklearn.datasets import load_digits  # as in _images

    target = load_digits().target
    order = np.random.RandomState(0).permutation(TOTAL)
    chosen = order[: TOTAL - TEST_SIZE] if split == "train" else order[TOTAL - TEST_SIZE :]
    out = target[chosen].astype(np.int32)
    out.setflags(write=False)
    return out


def _load_labels(split: str, data_dir: str | None) -> np.ndarray:
    return _labels(split)


data.DATASETS.add(
    "digits",
    data.Dataset(
        info=data.DatasetInfo(
            name="digits",
            image_size=8,
            channels=1,
            train_size=TOTAL - TEST_SIZE,
            test_size=TEST_SIZE,
            fid_samples=TEST_SIZE,
            source="scikit-learn sklearn.datasets.load_digits (UCI optdigits), bundled with the package",
            licence="scikit-learn BSD-3-Clause; UCI optdigits CC BY 4.0",
            num_classes=10,
        ),
        load=_load,
        labels=_load_labels,
    ),
)
