"""Datasets by name: metadata (`info`), images (`load`) and the batch stream (`pipeline`).

Every dataset yields uint8 images `[N, height, width, channels]` in [0, 255] with a
`train` and a `test` split; the training loop scales them to the range the
architecture expects ([0, 1], or [-1, 1] for the TAN ablation) on the device.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from models.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a config needs to know about a dataset without loading it."""

    name: str
    image_size: int  # native height == width
    channels: int
    train_size: int
    test_size: int
    fid_samples: int  # the paper's FID sample count (compare_gan_v2 §7), capped by the test split
    source: str
    licence: str

    def split_size(self, split: str) -> int:
        if split == "train":
            return self.train_size
        if split == "test":
            return self.test_size
        raise ValueError(f"split={split!r} is not allowed; choose train or test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    # load(split, image_size, data_dir) -> uint8 [N, image_size, image_size, channels]
    load: Callable[[str, int, "str | None"], np.ndarray]


DATASETS: Registry[Dataset] = Registry("dataset")


def names() -> list[str]:
    return DATASETS.names()


def info(name: str) -> DatasetInfo:
    return DATASETS.get(name).info


def load(name: str, split: str, image_size: int | None = None, data_dir: str | None = None) -> np.ndarray:
    """uint8 images `[N, image_size, image_size, channels]` of one split."""
    dataset = DATASETS.get(name)
    dataset.info.split_size(split)  # validates the split name
    return dataset.load(split, image_size or dataset.info.image_size, data_dir)


from study.data import digits as _digits  # noqa: E402,F401  (registers "digits")
