"""Datasets by name: metadata (`info`), images (`load`) and the batch stream (`pipeline`).

Every dataset yields uint8 images `[N, height, width, channels]` in [0, 255] with a
`train` and a `test` split; the training loop scales them to the range the
architecture expects ([0, 1], or [-1, 1] for the TAN ablation) on the device.

Real datasets are read from a prepared, memory-mapped format (see `storage`), made once
with `python -m study.data prepare NAME --from PATH`; `info` needs no data on disk.
Bad or missing files raise `DataError` (a ValueError) naming the path and what was expected.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from models.registry import Registry
from study.data.errors import DataError


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
    num_classes: int = 0  # class labels available (`labels`); 0: unlabelled

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
    # labels(split, data_dir) -> int32 [N] in [0, num_classes), in `load`'s image order
    labels: Callable[[str, "str | None"], np.ndarray] | None = None


DATASETS: Registry[Dataset] = Registry("dataset")


def names() -> list[str]:
    return DATASETS.names()


def info(name: str) -> DatasetInfo:
    return DATASETS.get(name).info


def load(
    name: str, split: str, image_size: int | None = None, data_dir: str | None = None, min_images: int | None = None
) -> np.ndarray:
    """uint8 images `[N, image_size, image_size, channels]` of one split (a read-only memmap for
    prepared datasets). Resized bilinearly (PIL) when image_size differs from the native size.

    min_images: raise DataError when the split holds fewer (e.g. the FID sample count).
    data_dir: where prepared datasets live; else $GAN_STUDY_DATA, else ~/.cache/gan_study/data.
    """
    dataset = DATASETS.get(name)
    dataset.info.split_size(split)  # validates the split name
    images = dataset.load(split, image_size or dataset.info.image_size, data_dir)
    if min_images is not None and len(images) < min_images:
        raise DataError(
            f"{name} {split} split has {len(images)} images (data dir {data_dir or 'default'}), "
            f"fewer than the {min_images} required (the FID sample count); prepare the full dataset"
        )
    return images


def labels(name: str, split: str, data_dir: str | None = None) -> np.ndarray:
    """int32 class labels [N] of one split, aligned with `load(name, split)`'s images.

    Raises DataError (one line) for a dataset without labels (`info(name).num_classes == 0`).
    """
    dataset = DATASETS.get(name)
    dataset.info.split_size(split)
    if dataset.labels is None or dataset.info.num_classes == 0:
        labelled = [n for n in names() if DATASETS.get(n).info.num_classes]
        raise DataError(f"dataset {name!r} has no class labels; labelled datasets: {', '.join(labelled)}")
    return dataset.labels(split, data_dir)


def _register_prepared(module, info: DatasetInfo) -> None:
    DATASETS.add(info.name, Dataset(info=info, load=module.load, labels=getattr(module, "labels", None)))


from study.data import celebahq as _celebahq  # noqa: E402
from study.data import cifar10 as _cifar10  # noqa: E402
from study.data import lsun as _lsun  # noqa: E402

_register_prepared(_cifar10, DatasetInfo(
    name="cifar10", image_size=32, channels=3, train_size=50_000, test_size=10_000, fid_samples=10_000,
    source=f"CIFAR-10 python release {_cifar10.URL} (md5 {_cifar10.TARBALL_MD5})",
    licence="no licence stated by the authors; cite Krizhevsky 2009", num_classes=_cifar10.NUM_CLASSES,
))
_register_prepared(_celebahq, DatasetInfo(
    name="celebahq128", image_size=128, channels=3, train_size=_celebahq.TOTAL - _celebahq.TEST_SIZE,
    test_size=_celebahq.TEST_SIZE, fid_samples=_celebahq.FID_SAMPLES,
    source="CelebA-HQ (Karras et al. 2018) at 128x128: image_celebahq-128-*-of-00100 TFRecords or an image folder",
    licence="CelebA: non-commercial research use only",
))
_register_prepared(_lsun, DatasetInfo(
    name="lsun_bedroom", image_size=128, channels=3, train_size=_lsun.TOTAL_FULL - _lsun.TEST_SIZE_FULL,
    test_size=_lsun.TEST_SIZE_FULL, fid_samples=_lsun.FID_SAMPLES,
    source="LSUN bedroom_train_lmdb (Yu et al. 2015), centre crop-or-pad to 128",
    licence="LSUN: research use; images from the web (see lsun terms)",
))

from study.data import digits as _digits  # noqa: E402,F401  (registers "digits")
