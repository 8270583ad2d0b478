"""The training batch stream: shuffled epochs, deterministic per seed, resumable.

Batch number i (0-based) is the slice [i*B, (i+1)*B) of the infinite sequence formed
by concatenating per-epoch permutations, epoch e shuffled by `fold(seed, e)`. So the
stream is a pure function of (seed, i): a resumed trial restarts at its batch number
and sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import numpy as np


def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(num_examples: int, batch_size: int, seed: int, first_batch: int, count: int) -> np.ndarray:
    """Example indices of batches [first_batch, first_batch + count): int64 [count, batch_size]."""
    start = first_batch * batch_size
    stop = (first_batch + count) * batch_size
    first_epoch, last_epoch = start // num_examples, (stop - 1) // num_examples
    flat = np.concatenate(
        [_epoch_permutation(num_examples, seed, e) for e in range(first_epoch, last_epoch + 1)]
    )
    offset = start - first_epoch * num_examples
    return flat[offset : offset + stop - start].reshape(count, batch_size)


class BatchStream:
    """Yields groups of consecutive uint8 batches `[count, batch, height, width, channels]`."""

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, start_batch: int = 0):
        if len(images) < 1:
            raise ValueError("cannot stream batches from a split with zero images")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.position = start_batch

    def next(self, count: int) -> np.ndarray:
        idx = batch_indices(len(self.images), self.batch_size, self.seed, self.position, count)
        self.position += count
        return self.images[idx]
