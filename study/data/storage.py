"""The prepared format: one memory-mapped uint8 .npy per split plus a manifest.

Layout under the data directory (argument, else env GAN_STUDY_DATA, else
~/.cache/gan_study/data):

    <dataset>/manifest.json     counts, shapes, source checksums, output sha256
    <dataset>/train.npy         uint8 [N, H, W, C] (numpy .npy, opened with mmap_mode="r")
    <dataset>/test.npy
    <dataset>/train_32px.npy    resized copies, made on first use (bilinear, see images.py)

Splits are written chunk by chunk into a `.partial` file and renamed when complete,
so an interrupted prepare never leaves a file a loader would accept.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Iterable

import numpy as np

from study.data.errors import DataError
from study.data.images import resize_batch

ENV_VAR = "GAN_STUDY_DATA"
FORMAT_VERSION = 1
RESIZE_CHUNK = 4096


def data_root(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The data directory: the argument, else $GAN_STUDY_DATA, else ~/.cache/gan_study/data."""
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return pathlib.Path(os.environ[ENV_VAR]).expanduser()
    return pathlib.Path("~/.cache/gan_study/data").expanduser()


def file_digest(path: pathlib.Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(obj: dict, path: pathlib.Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class SplitWriter:
    """Streams uint8 image chunks into `<directory>/<name>.npy` (memory-mapped, bounded RAM)."""

    def __init__(self, directory: pathlib.Path, name: str, count: int, shape: tuple[int, ...]):
        directory.mkdir(parents=True, exist_ok=True)
        self.final = directory / f"{name}.npy"
        # unique per process: parallel trials may build the same resize cache at once
        self.partial = directory / f"{name}.npy.{os.getpid()}.partial"
        self.count = count
        self.written = 0
        self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.uint8, shape=(count, *shape))

    def write(self, chunk: np.ndarray) -> None:
        end = self.written + len(chunk)
        if end > self.count:
            raise DataError(f"{self.final}: more images than the {self.count} counted up front")
        self.array[self.written : end] = chunk
        self.written = end

    def finish(self) -> dict:
        """Flush, rename into place; returns the manifest entry (count, shape, sha256)."""
        if self.written != self.count:
            raise DataError(f"{self.final}: wrote {self.written} images, expected {self.count}")
        shape = list(self.array.shape)
        self.array.flush()
        del self.array
        os.replace(self.partial, self.final)  # atomic: readers see the old file or the complete new one
        return {"file": self.final.name, "count": self.count, "shape": shape, "sha256": file_digest(self.final, "sha256")}


def write_split(directory: pathlib.Path, name: str, count: int, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> dict:
    writer = SplitWriter(directory, name, count, shape)
    for chunk in chunks:
        writer.write(chunk)
    return writer.finish()


def write_labels(directory: pathlib.Path, split: str, labels: np.ndarray) -> dict:
    """int32 class labels [N] of a split -> `<split>_labels.npy` (atomic); the manifest entry
    (file, count, sha256) that `open_labels` checks."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{split}_labels.npy"
    partial = directory / f"{split}_labels.npy.{os.getpid()}.partial"
    with open(partial, "wb") as handle:
        np.save(handle, np.ascontiguousarray(labels, np.int32))
    os.replace(partial, final)
    return {"file": final.name, "count": int(len(labels)), "sha256": file_digest(final, "sha256")}


def open_labels(dataset: str, split: str, data_dir, prepare_hint: str) -> np.ndarray:
    """The prepared split's int32 class labels [N], aligned with its images; a dataset prepared
    without labels (an older prepare) or a label file that disagrees with the manifest is a DataError."""
    directory, manifest = read_manifest(dataset, data_dir, prepare_hint)
    entry = manifest["splits"].get(split)
    if entry is None:
        raise DataError(f"{dataset} split {split!r} is missing from {directory / 'manifest.json'}; run `{prepare_hint}`")
    labels_entry = entry.get("labels")
    if labels_entry is None:
        raise DataError(f"{dataset} was prepared without class labels (an older prepare; {directory}); "
                        f"run `{prepare_hint}` again to store them")
    path = directory / labels_entry["file"]
    try:
        labels = np.load(path)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a readable .npy file ({error}); run `{prepare_hint}` again") from None
    if labels.dtype != np.int32 or labels.shape != (entry["count"],):
        raise DataError(f"{path}: holds {labels.dtype} {list(labels.shape)}, expected int32 [{entry['count']}] "
                        f"(one label per image); run `{prepare_hint}` again")
    labels.setflags(write=False)
    return labels


def read_manifest(dataset: str, data_dir, prepare_hint: str) -> tuple[pathlib.Path, dict]:
    directory = data_root(data_dir) / dataset
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(
            f"{dataset} is not prepared: looked for {manifest_path}; run `{prepare_hint}`"
            f" (data directory: --to / data_dir, else ${ENV_VAR}, else ~/.cache/gan_study/data)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        splits = manifest["splits"]
    except (ValueError, KeyError) as error:
        raise DataError(f"{manifest_path}: unreadable manifest ({error}); run `{prepare_hint}` again") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{manifest_path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}; prepare again")
    return directory, manifest


def open_split(dataset: str, split: str, data_dir, prepare_hint: str) -> np.ndarray:
    """The prepared split as a read-only memmap uint8 [N, H, W, C]; shape checked against the manifest."""
    directory, manifest = read_manifest(dataset, data_dir, prepare_hint)
    entry = manifest["splits"].get(split)
    path = directory / f"{split}.npy"
    if entry is None or not path.is_file():
        raise DataError(f"{dataset} split {split!r} is missing: looked for {path}; run `{prepare_hint}`")
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a readable .npy file ({error}); run `{prepare_hint}` again") from None
    if images.dtype != np.uint8 or list(images.shape) != entry["shape"]:
        raise DataError(
            f"{path}: holds {images.dtype} {list(images.shape)}, the manifest says uint8 {entry['shape']}; "
            f"the file is truncated or stale, run `{prepare_hint}` again"
        )
    return images


def resized(images: np.ndarray, size: int, cache: pathlib.Path | None = None) -> np.ndarray:
    """`images` bilinearly resized to size x size; cached at `cache` when given.

    The cache is written once (chunked, bounded memory) and memory-mapped afterwards;
    without a writable directory the result stays in memory.
    """
    shape = (size, size, images.shape[-1])
    chunks = (resize_batch(np.asarray(images[i : i + RESIZE_CHUNK]), size) for i in range(0, len(images), RESIZE_CHUNK))
    if cache is None:
        return np.concatenate(list(chunks)) if len(images) else np.zeros((0, *shape), np.uint8)
    if cache.is_file():
        cached = np.load(cache, mmap_mode="r")
        if cached.shape == (len(images), *shape):
            return cached
    try:
        write_split(cache.parent, cache.stem, len(images), shape, chunks)
    except PermissionError:
        return resized(images, size, None)
    return np.load(cache, mmap_mode="r")


def load_prepared(dataset: str, split: str, image_size: int, data_dir, prepare_hint: str) -> np.ndarray:
    """A prepared split at `image_size`: the memmap itself, or a cached bilinear resize.

    The resize cache is named after the split's sha256 (`<split>_<size>px_<sha12>.npy`),
    so re-preparing different data never serves a stale resize.
    """
    images = open_split(dataset, split, data_dir, prepare_hint)
    if images.shape[1] == image_size:
        return images
    directory, manifest = read_manifest(dataset, data_dir, prepare_hint)
    tag = manifest["splits"][split]["sha256"][:12]
    return resized(images, image_size, directory / f"{split}_{image_size}px_{tag}.npy")
