"""Batch stream: deterministic per seed, resumable, epoch coverage, memmap gather, prefetcher."""
import numpy as np
import pytest

from study.data import pipeline


def images_memmap(tmp_path, count=37, shape=(4, 4, 3)):
    array = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(count, *shape))
    array[:] = np.arange(count, dtype=np.uint8)[:, None, None, None]  # image i is filled with i
    array.flush()
    return np.load(tmp_path / "images.npy", mmap_mode="r")


def test_same_seed_same_batches_different_seed_different(tmp_path):
    images = images_memmap(tmp_path)
    a = pipeline.BatchStream(images, 8, seed=3).next(10)
    b = pipeline.BatchStream(images, 8, seed=3).next(10)
    c = pipeline.BatchStream(images, 8, seed=4).next(10)
    assert a.shape == (10, 8, 4, 4, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the stream (with its permutation cache) is the pure function of (seed, batch number)
    np.testing.assert_array_equal(a, np.asarray(images)[pipeline.batch_indices(37, 8, 3, 0, 10)])


def test_every_epoch_visits_each_image_once():
    idx = pipeline.batch_indices(37, 8, seed=5, first_batch=0, count=37)  # 296 = 8 epochs of 37
    flat = idx.reshape(-1)
    for epoch in range(8):
        assert sorted(flat[epoch * 37 : (epoch + 1) * 37]) == list(range(37))
    assert not np.array_equal(flat[:37], flat[37:74])  # epochs are reshuffled


def test_resume_gives_the_uninterrupted_batches(tmp_path):
    images = images_memmap(tmp_path)
    uninterrupted = pipeline.BatchStream(images, 8, seed=11).next(20)
    first = pipeline.BatchStream(images, 8, seed=11)
    parts = [first.next(3), first.next(4)]
    resumed = pipeline.BatchStream(images, 8, seed=11, start_batch=7)  # e.g. restored at step 7
    parts += [resumed.next(5), resumed.next(8)]
    np.testing.assert_array_equal(np.concatenate(parts), uninterrupted)


def test_gather_on_memmap_equals_fancy_indexing(tmp_path):
    images = images_memmap(tmp_path)
    idx = np.array([[5, 1, 5, 36], [0, 36, 2, 9]])
    got = pipeline.gather(images, idx)
    np.testing.assert_array_equal(got, np.asarray(images)[idx])
    assert got[0, 3, 0, 0, 0] == 36 and got.shape == (2, 4, 4, 4, 3)


def test_prefetcher_output_equals_the_stream(tmp_path):
    images = images_memmap(tmp_path)
    expected = pipeline.BatchStream(images, 8, seed=2).next(5 * 12).reshape(12, 5, 8, 4, 4, 3)
    with pipeline.Prefetcher(pipeline.BatchStream(images, 8, seed=2), count_per_step=5, depth=2) as prefetch:
        got = [np.asarray(prefetch.next()) for _ in range(12)]
    import jax

    np.testing.assert_array_equal(np.stack(got), expected)
    first = pipeline.Prefetcher(pipeline.BatchStream(images, 8, seed=2), count_per_step=5)
    assert isinstance(first.next(), jax.Array)
    first.close()
    with pytest.raises(RuntimeError, match="after close"):
        first.next()


def test_prefetcher_reraises_stream_errors():
    class Broken:
        def next(self, count):
            raise OSError("disk went away")

    prefetch = pipeline.Prefetcher(Broken(), count_per_step=1)
    with pytest.raises(OSError, match="disk went away"):
        prefetch.next()
    prefetch.close()


def test_digits_labels_align_with_images_and_unlabelled_datasets_say_so():
    from study import data
    from study.data.errors import DataError

    for split in ("train", "test"):
        images, labels = data.load("digits", split), data.labels("digits", split)
        assert labels.shape == (len(images),) and labels.dtype == np.int32
        assert set(np.unique(labels)) == set(range(data.info("digits").num_classes))
    # Aligned: every class's mean test image is nearest to its own class's mean train image.
    means = {split: np.stack([data.load("digits", split)[data.labels("digits", split) == c].mean(0).ravel()
                              for c in range(10)]) for split in ("train", "test")}
    distances = ((means["test"][:, None] - means["train"][None]) ** 2).sum(-1)
    assert list(distances.argmin(1)) == list(range(10))
    with pytest.raises(DataError, match="'celebahq128' has no class labels; labelled datasets: cifar10, digits"):
        data.labels("celebahq128", "test")
