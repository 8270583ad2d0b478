"""The training batch stream: shuffled epochs, deterministic per seed, resumable.

Batch number i (0-based) is the slice [i*B, (i+1)*B) of the infinite sequence formed
by concatenating per-epoch permutations, epoch e shuffled by `fold(seed, e)`. So the
stream is a pure function of (seed, i): a resumed trial restarts at its batch number
and sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from study.data.errors import DataError


def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(
    num_examples: int, batch_size: int, seed: int, first_batch: int, count: int, permutation=None
) -> np.ndarray:
    """Example indices of batches [first_batch, first_batch + count): int64 [count, batch_size].

    permutation: optional `epoch -> permutation` (a cache of `_epoch_permutation`); the
    result does not depend on it.
    """
    permutation = permutation or (lambda epoch: _epoch_permutation(num_examples, seed, epoch))
    start = first_batch * batch_size
    stop = (first_batch + count) * batch_size
    first_epoch, last_epoch = start // num_examples, (stop - 1) // num_examples
    # Slice each epoch before concatenating: O(batch) per call, not O(N) (LSUN has 3M).
    parts = [
        permutation(e)[max(start - e * num_examples, 0) : min(stop - e * num_examples, num_examples)]
        for e in range(first_epoch, last_epoch + 1)
    ]
    return np.concatenate(parts).reshape(count, batch_size)


class BatchStream:
    """Yields groups of consecutive uint8 batches `[count, batch, height, width, channels]`;
    given `labels` (int [N], aligned with `images`), pairs (those images, their labels int32
    [count, batch]) from the same indices, so labels resume exactly as the images do."""

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, start_batch: int = 0,
                 labels: np.ndarray | None = None):
        if len(images) < 1:
            raise DataError("cannot stream batches from a split with zero images; expected at least one")
        if labels is not None and len(labels) != len(images):
            raise DataError(f"{len(labels)} labels for {len(images)} images; expected one label per image")
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, np.int32)
        self.batch_size = batch_size
        self.seed = seed
        self.position = start_batch
        # A permutation costs O(N) (tens of ms for LSUN's 3M); keep the current epochs'.
        self._permutations: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 4:
                self._permutations.pop(min(self._permutations))
            self._permutations[epoch] = _epoch_permutation(len(self.images), self.seed, epoch)
        return self._permutations[epoch]

    def next(self, count: int) -> np.ndarray:
        idx = batch_indices(len(self.images), self.batch_size, self.seed, self.position, count, self._permutation)
        self.position += count
        if self.labels is not None:
            return gather(self.images, idx), self.labels[idx]
        return gather(self.images, idx)


def gather(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """images[indices] for int [..., ] indices, reading a memmap in ascending order.

    One vectorised fancy-index read; ascending order turns random access on a
    memory-mapped file into a forward sweep (page cache and read-ahead friendly).
    """
    flat = indices.reshape(-1)
    order = np.argsort(flat, kind="stable")
    out = np.empty((len(flat), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[flat[order]]
    return out.reshape(*indices.shape, *images.shape[1:])


_DONE = object()


class Prefetcher:
    """Prepares the next `depth` groups of batches on a background thread and puts them on the device.

    `next()` returns `jax.device_put(stream.next(count_per_step))` results in stream order:
    one producer thread calls the stream sequentially, so the output is identical to
    calling the stream directly, whatever the timing. Errors in the thread re-raise in
    `next()`. Use `close()` (or a `with` block) to stop the thread; the stream's position
    then runs up to `depth + 1` groups ahead of what was consumed (resume by step number,
    not by `stream.position`).
    """

    def __init__(self, stream: BatchStream, count_per_step: int, depth: int = 2, device=None):
        if depth < 1:
            raise ValueError(f"depth={depth} is not allowed; expected at least 1")
        self.stream = stream
        self.count_per_step = count_per_step
        self.device = device
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        import jax  # the data layer needs JAX only to prefetch onto a device; preparing data never loads it

        try:
            while not self._stop.is_set():
                host = self.stream.next(self.count_per_step)
                self._put(jax.device_put(host, self.device))
        except BaseException as error:  # handed to the consumer
            self._put((_DONE, error))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        """The next device array uint8 [count_per_step, batch, height, width, channels] (with a
        labelled stream: the pair (images, labels int32 [count_per_step, batch]))."""
        if self._stop.is_set():
            raise RuntimeError("Prefetcher.next() after close()")
        item = self._queue.get()
        if isinstance(item, tuple) and len(item) == 2 and item[0] is _DONE:
            self._stop.set()
            raise item[1]
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
