"""Images/s of the input pipeline alone on synthetic memory-mapped splits.

`python -m study.data bench` writes a random uint8 memmap per shape into a temporary
folder (or --dir), then times BatchStream.next (host gather) and the Prefetcher
(gather + jax.device_put on a background thread) at the given batch size. The file
is read once before timing, so numbers are for a split that fits the page cache.
"""
from __future__ import annotations

import pathlib
import tempfile
import time

import numpy as np

from study.data.pipeline import BatchStream, Prefetcher


def synthetic_split(path: pathlib.Path, count: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, size, size, channels))
    rng = np.random.default_rng(seed)
    for start in range(0, count, 4096):
        stop = min(start + 4096, count)
        array[start:stop] = rng.integers(0, 256, size=(stop - start, size, size, channels), dtype=np.uint8)
    array.flush()
    del array
    images = np.load(path, mmap_mode="r")
    images.sum(dtype=np.uint64)  # warm the page cache
    return images


def measure(images: np.ndarray, batch_size: int, count_per_step: int, seconds: float, prefetch: bool) -> float:
    """images/s delivered by the stream (host arrays) or the prefetcher (device arrays)."""
    stream = BatchStream(images, batch_size, seed=0)
    if prefetch:
        source = Prefetcher(stream, count_per_step)
        pull = source.next
    else:
        source = None
        pull = lambda: stream.next(count_per_step)  # noqa: E731
    pull()  # warm-up (first device_put initialises the backend)
    delivered, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = pull()
        if prefetch:
            out.block_until_ready()
        delivered += count_per_step * batch_size
    elapsed = time.perf_counter() - start
    if source is not None:
        source.close()
    return delivered / elapsed


def run(sizes=((32, 50_000), (128, 30_000)), batch_size: int = 64, count_per_step: int = 1,
        seconds: float = 5.0, directory: str | None = None, log=print) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for size, count in sizes:
            images = synthetic_split(pathlib.Path(tmp) / f"synthetic_{size}.npy", count, size)
            for prefetch in (False, True):
                rate = measure(images, batch_size, count_per_step, seconds, prefetch)
                name = f"{size}x{size}x3 {'prefetcher (device_put)' if prefetch else 'stream (host gather)'}"
                results[name] = rate
                log(f"{name:42s} batch {batch_size} x {count_per_step}: {rate:12,.0f} images/s  (split of {count:,})")
            del images
    return results
