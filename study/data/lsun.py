"""LSUN Bedroom from the official LMDB export (https://www.yf.io/p/lsun, `bedroom_train_lmdb/`).

The LMDB holds 3,033,042 records: key = 40 hex digits (an image id, ASCII), value = a
WebP (current export) or JPEG image whose short side is 256. Format sniffed from magic
bytes. Preprocessing as the paper's code (compare_gan v2 datasets.py, spec §8): decode,
then centre crop-or-pad to 128x128 with no resize (TF1 resize_image_with_crop_or_pad).

Split rule (the paper kept TFRecord shard 99 of 100, ~30,588 images, as the test split;
that shard's membership is not recoverable from the LMDB): records in LMDB key order
(bytewise-sorted ids); the last TEST_SIZE_FULL = 30,588 form the test split when the
LMDB has the full 3,033,042 records, otherwise the last ceil(N / 100) (1%); the rest
train. The prepared splits are streamed to memory-mapped .npy (~147 GB for train):
never all in memory.
"""
from __future__ import annotations

import collections
import concurrent.futures
import math
import multiprocessing
import os
import pathlib
import re

import numpy as np

from study.data import storage
from study.data.errors import DataError
from study.data.images import center_crop_or_pad, decode_rgb

NAME = "lsun_bedroom"
SIZE = 128
TOTAL_FULL = 3_033_042
TEST_SIZE_FULL = 30_588
FID_SAMPLES = 10_000
CHUNK = 1024
KEY_PATTERN = re.compile(rb"[0-9a-f]{40}")
PREPARE_HINT = f"python -m study.data prepare {NAME} --from PATH/bedroom_train_lmdb"
DOWNLOAD_STEPS = """LSUN Bedroom has no checksummed single-file URL; fetch it by hand:
  1. git clone https://github.com/fyu/lsun && cd lsun
  2. python download.py -c bedroom          # bedroom_train_lmdb.zip (~43 GB), from http://dl.yf.io/lsun/scenes/
  3. unzip bedroom_train_lmdb.zip           # -> bedroom_train_lmdb/{data.mdb,lock.mdb}
  4. python -m study.data prepare lsun_bedroom --from bedroom_train_lmdb"""


def test_size(total: int) -> int:
    """Test-split size for an LMDB of `total` records (see the module docstring)."""
    return TEST_SIZE_FULL if total == TOTAL_FULL else math.ceil(total / 100)


def _open(source: pathlib.Path):
    try:
        import lmdb  # optional: the `data` extra
    except ImportError:
        raise DataError("reading LSUN needs the lmdb package: pip install 'gan-study[data]'") from None
    folder = source if source.is_dir() else source.parent
    if not (folder / "data.mdb").is_file():
        raise DataError(f"{folder}: no data.mdb; expected the official LSUN bedroom_train_lmdb folder")
    try:
        return lmdb.open(str(folder), readonly=True, lock=False, readahead=False, subdir=True, max_readers=8)
    except lmdb.Error as error:
        raise DataError(f"{folder / 'data.mdb'}: not a readable LMDB ({error})") from None


def _decode_many(items: list[tuple[bytes, bytes]], where: str) -> np.ndarray:
    """[(key, encoded)] -> uint8 [len, 128, 128, 3]; runs in a worker process."""
    return np.stack([
        center_crop_or_pad(decode_rgb(value, f"{where} key {key.decode('ascii', 'replace')}"), SIZE)
        for key, value in items
    ])


def _raw_chunks(env, where: str, official: bool):
    with env.begin(buffers=False) as txn:
        batch = []
        for key, value in txn.cursor():
            if official and not KEY_PATTERN.fullmatch(key):
                raise DataError(f"{where}: key {key[:60]!r} is not a 40-hex-digit LSUN image id")
            batch.append((key, value))
            if len(batch) == CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch


def _chunks(env, where: str, official: bool, workers: int):
    """Yields uint8 [<=CHUNK, 128, 128, 3] in key order.

    Pillow's WebP decoder holds the GIL (threads gave no speed-up), so chunks are decoded
    in `workers` forkserver processes, at most 2 * workers chunks in flight, results in order.
    """
    if workers <= 1:
        for batch in _raw_chunks(env, where, official):
            yield _decode_many(batch, where)
        return
    context = multiprocessing.get_context("forkserver")  # no fork of a process that may hold JAX threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: collections.deque = collections.deque()
        for batch in _raw_chunks(env, where, official):
            pending.append(pool.submit(_decode_many, batch, where))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _split_chunks(chunks, train_count: int):
    """Route a stream of chunks into (train part, test part) at position train_count."""
    seen = 0
    for chunk in chunks:
        cut = min(max(train_count - seen, 0), len(chunk))
        yield chunk[:cut], chunk[cut:]
        seen += len(chunk)


def prepare(source, data_dir=None, official: bool = True, log=print, workers: int | None = None) -> dict:
    """Stream the LMDB at `source` into prepared train/test memmaps; returns the manifest."""
    source = pathlib.Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source}: no such folder; expected the official LSUN bedroom_train_lmdb folder")
    env = _open(source)
    where = str((source if source.is_dir() else source.parent) / "data.mdb")
    total = env.stat()["entries"]
    if total == 0:
        raise DataError(f"{where}: zero images; expected the LSUN bedroom records")
    if official and total != TOTAL_FULL:
        raise DataError(f"{where}: {total} records, expected the official {TOTAL_FULL}")
    test_count = test_size(total)
    train_count = total - test_count
    if official and test_count < FID_SAMPLES:
        raise DataError(f"{where}: test split of {test_count} images, smaller than the paper's {FID_SAMPLES} FID samples")
    if train_count < 1:
        raise DataError(f"{where}: {total} records leave no training images")
    directory = storage.data_root(data_dir) / NAME
    shape = (SIZE, SIZE, 3)
    train = storage.SplitWriter(directory, "train", train_count, shape)
    test = storage.SplitWriter(directory, "test", test_count, shape)
    done = 0
    for train_part, test_part in _split_chunks(_chunks(env, where, official, workers or os.cpu_count() or 1), train_count):
        train.write(train_part)
        test.write(test_part)
        done += len(train_part) + len(test_part)
        if done % (CHUNK * 100) < CHUNK:
            log(f"{NAME}: {done}/{total} images")
    env.close()
    splits = {"train": train.finish(), "test": test.finish()}
    for split, entry in splits.items():
        log(f"{NAME} {split}: {entry['count']} images -> {directory / entry['file']}")
    manifest = {
        "dataset": NAME,
        "format_version": storage.FORMAT_VERSION,
        "official": official,
        "source": {"path": where, "records": total, "data_mdb_bytes": os.path.getsize(where)},
        "split_rule": f"LMDB key order; last {test_count} records test ({'30,588 of the full set' if total == TOTAL_FULL else 'ceil(N/100)'}), the rest train",
        "splits": splits,
        "preprocessing": "WebP/JPEG decode, centre crop-or-pad to 128x128, no resize (compare_gan v2)",
    }
    storage.write_json_atomic(manifest, directory / "manifest.json")
    return manifest


def load(split: str, image_size: int, data_dir) -> np.ndarray:
    return storage.load_prepared(NAME, split, image_size, data_dir, PREPARE_HINT)
