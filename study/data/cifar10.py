"""CIFAR-10 from the official python release (https://www.cs.toronto.edu/~kriz/cifar.html).

Source: `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/` folder.
`data_batch_1..5` (10,000 images each) form the 50,000-image train split and
`test_batch` the 10,000-image test split, the split the paper's FID uses (its TFRecords
"image_cifar10-dev" are this test set; spec §8). Each batch is a pickled dict whose
`data` is uint8 [10000, 3072]: a row is 1024 red, then 1024 green, then 1024 blue bytes,
each plane row-major 32x32. Keys are bytes or str (the official Python 2 pickles
give str when read with encoding="latin1", as here; Python 3 rewrites may hold bytes);
both are accepted.

Checksums: the tarball's md5 is published on the dataset page
(c58f30108f718f92721af3b95e74349a); the per-file md5s below are the ones torchvision
verifies (pytorch/vision, torchvision/datasets/cifar.py). Not a file is unpickled with
plain pickle: see safe_pickle.py.
"""
from __future__ import annotations

import hashlib
import pathlib
import tarfile

import numpy as np

from study.data import storage
from study.data.errors import DataError
from study.data.safe_pickle import safe_loads

NAME = "cifar10"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILES = ("test_batch",)
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
ROWS_PER_FILE = 10_000
SIZE = 32
PREPARE_HINT = f"python -m study.data prepare {NAME} --from PATH/cifar-10-python.tar.gz"


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """uint8 [N, 3072] channel-planar rows -> uint8 [N, 32, 32, 3] (HWC)."""
    return np.ascontiguousarray(rows.reshape(len(rows), 3, SIZE, SIZE).transpose(0, 2, 3, 1))


NUM_CLASSES = 10


def decode_batch(payload: bytes, where: str, official: bool) -> np.ndarray:
    """One pickled batch file -> uint8 [N, 32, 32, 3]."""
    return decode_labelled_batch(payload, where, official)[0]


def decode_labelled_batch(payload: bytes, where: str, official: bool) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch file -> (uint8 images [N, 32, 32, 3], int32 labels [N] in [0, 10)),
    the labels from the batch's 'labels' list (airplane 0 ... truck 9, batches.meta's order)."""
    batch = safe_loads(payload, where)
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a pickled dict with a 'data' entry, found {type(batch).__name__}")
    rows = batch.get(b"data", batch.get("data"))
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * SIZE * SIZE:
        found = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise DataError(f"{where}: 'data' must be uint8 [N, 3072] (channel-planar 32x32x3 rows), found {found}")
    if official and len(rows) != ROWS_PER_FILE:
        raise DataError(f"{where}: {len(rows)} rows, the official batch has {ROWS_PER_FILE}")
    labels = batch.get(b"labels", batch.get("labels"))
    try:
        labels = np.asarray(labels, np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (len(rows),) or (len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES):
        raise DataError(f"{where}: 'labels' must be a list of {len(rows)} class numbers in [0, {NUM_CLASSES})")
    return rows_to_images(rows), labels.astype(np.int32)


def _read_files(source: pathlib.Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """{file name: bytes} of the six batches and {checked path: md5} of what was read."""
    wanted = TRAIN_FILES + TEST_FILES
    checksums: dict[str, str] = {}
    if source.is_dir():
        folder = source / FOLDER if (source / FOLDER).is_dir() else source
        missing = [name for name in wanted if not (folder / name).is_file()]
        if missing:
            raise DataError(f"{folder}: missing {', '.join(missing)}; expected the extracted {FOLDER}/ folder with {', '.join(wanted)}")
        return {name: (folder / name).read_bytes() for name in wanted}, checksums
    if not source.is_file():
        raise DataError(f"{source}: no such file or folder; expected cifar-10-python.tar.gz or the {FOLDER}/ folder")
    checksums[source.name] = storage.file_digest(source, "md5")
    try:
        with tarfile.open(source, "r:*") as archive:
            members = {pathlib.PurePosixPath(m.name).name: m for m in archive.getmembers() if m.isfile()}
            missing = [name for name in wanted if name not in members]
            if missing:
                raise DataError(f"{source}: archive lacks {', '.join(missing)}; expected the official {FOLDER} tarball")
            return {name: archive.extractfile(members[name]).read() for name in wanted}, checksums
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{source}: truncated or not a tar.gz archive ({error}); download it again from {URL}") from None


def prepare(source, data_dir=None, official: bool = True, log=print) -> dict:
    """Validate the official release at `source` and write the prepared splits; returns the manifest.

    official=True demands the published checksums and 10,000 rows per batch; official=False
    (tests, subsets) records checksums without judging them.
    """
    source = pathlib.Path(source).expanduser()
    files, checksums = _read_files(source)
    if source.is_file() and official and checksums[source.name] != TARBALL_MD5:
        raise DataError(f"{source}: md5 {checksums[source.name]}, expected the published {TARBALL_MD5}; the download is corrupt")
    for name, payload in files.items():
        digest = hashlib.md5(payload).hexdigest()
        checksums[name] = digest
        if official and digest != FILE_MD5[name]:
            raise DataError(f"{source}: {name} has md5 {digest}, expected {FILE_MD5[name]}; that file is corrupt or not official")
    directory = storage.data_root(data_dir) / NAME
    splits = {}
    for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        decoded = [decode_labelled_batch(files[name], f"{source}:{name}", official) for name in names]
        images = [i for i, _ in decoded]
        count = sum(len(i) for i in images)
        splits[split] = storage.write_split(directory, split, count, (SIZE, SIZE, 3), images)
        splits[split]["labels"] = storage.write_labels(directory, split, np.concatenate([y for _, y in decoded]))
        log(f"{NAME} {split}: {count} images and labels -> {directory / splits[split]['file']}")
    manifest = {
        "dataset": NAME,
        "format_version": storage.FORMAT_VERSION,
        "official": official,
        "source": {"path": str(source), "md5": checksums},
        "splits": splits,
        "preprocessing": "none (native 32x32x3, channel-planar rows transposed to HWC)",
    }
    storage.write_json_atomic(manifest, directory / "manifest.json")
    return manifest


def load(split: str, image_size: int, data_dir) -> np.ndarray:
    return storage.load_prepared(NAME, split, image_size, data_dir, PREPARE_HINT)


def labels(split: str, data_dir) -> np.ndarray:
    """int32 [N] class labels of a prepared split (a CIFAR-10 prepared before labels were stored
    raises DataError: prepare it again)."""
    return storage.open_labels(NAME, split, data_dir, PREPARE_HINT)
