"""Reference points, label-based scores on real digits, and self-verifying caches.

One evaluator at the tiny protocol (digits, test split, 300 samples, 8x8), its own cache folder.
"""
from __future__ import annotations

import numpy as np
import pytest

from study import data
from study.metrics import Evaluator, cache
from study.metrics import evaluator as evaluator_module

CONDITIONAL = evaluator_module.CONDITIONAL_REFERENCE_METRICS


def _make(cache_dir, num_samples=300, log=None):
    return Evaluator(dataset="digits", split="test", image_size=8, num_samples=num_samples, cache_dir=cache_dir,
                     log=log or (lambda message: None))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("references_cache")


@pytest.fixture(scope="module")
def tiny(cache_dir):
    return _make(cache_dir)


def test_reference_points_order_on_digits(tiny):
    p = tiny.protocol
    for metric in ("fid_domain", "kid_domain"):
        assert p[f"{metric}_ref_floor"] < p[f"{metric}_ref_noise"], metric
        assert p[f"{metric}_ref_floor"] < p[f"{metric}_ref_mean_image"], metric
    # The figures measured by hand (floor 6.3, mean image 421.3; noise ~250 by seed).
    assert 5.0 < p["fid_domain_ref_floor"] < 8.0
    assert 400.0 < p["fid_domain_ref_mean_image"] < 440.0
    assert 200.0 < p["fid_domain_ref_noise"] < 300.0
    assert p["classes_covered_domain_ref_floor"] == 10
    assert p["classes_covered_domain_ref_mean_image"] <= 1  # one image, repeated: at most one class
    assert p["am_score_domain_ref_floor"] < p["am_score_domain_ref_noise"]  # AM: lower is better
    assert p["mode_score_domain_ref_floor"] > p["mode_score_domain_ref_noise"]  # Mode Score: higher is better
    assert p["is_domain_ref_mean_image"] == pytest.approx(1.0)
    # The 1-NN two-sample test cannot tell real train images from the test split (H0 value 0.5;
    # 300 + 300 points, std ~0.025) but tells noise and the repeated mean image apart perfectly.
    assert abs(p["one_nn_accuracy_domain_ref_floor"] - 0.5) < 0.1
    assert p["one_nn_accuracy_domain_ref_noise"] > 0.99
    assert p["one_nn_accuracy_domain_ref_mean_image"] > 0.99
    assert p["m_is_domain_ref_mean_image"] == pytest.approx(1.0)  # identical images: no within-class diversity
    assert p["m_is_domain_ref_floor"] > 1.0
    assert p["one_nn_distance"] == "euclidean_leave_one_out_ties_averaged"


def _fixed_images(images):
    images = np.asarray(images, np.float32)

    def sample_fn(index, size):
        picked = np.arange(index * size, (index + 1) * size) % len(images)
        return images[picked]
    return sample_fn


def test_classes_covered_real_digits_ten_one_digit_one(tiny):
    real = np.asarray(data.load("digits", "test", 8), np.float32) / 255.0
    metrics = tiny.evaluate(_fixed_images(real[:300]))
    assert metrics["classes_covered_domain"] == 10
    assert metrics["am_score_domain"] < 0.5
    one = tiny.evaluate(_fixed_images(np.repeat(real[:1], 300, axis=0)))
    assert one["classes_covered_domain"] == 1  # total mode collapse on a real digit
    assert one["mode_score_domain"] < metrics["mode_score_domain"]


def test_references_cached_per_protocol(tiny, cache_dir, monkeypatch):
    files = sorted((cache_dir / "references_v1").glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(evaluator_module.Evaluator, "_compute_references",
                        lambda self: pytest.fail("references recomputed despite the cache"))
    again = _make(cache_dir)
    refs = {k: v for k, v in again.protocol.items() if "_ref_" in k}
    assert refs == {k: v for k, v in tiny.protocol.items() if "_ref_" in k and not k.startswith(CONDITIONAL)}
    assert len(refs) == 24  # 8 domain metrics x 3 kinds (no Inception weights here)
    monkeypatch.undo()
    _make(cache_dir, num_samples=200)  # another protocol: its own file
    assert len(list((cache_dir / "references_v1").glob("*.npz"))) == 2


def test_damaged_caches_are_rebuilt_with_a_warning(tiny, cache_dir):
    # one flipped bit in the classifier, truncation of the two statistics files
    paths = [*(cache_dir / "domain").glob("*.msgpack"), *(cache_dir / "real_stats_v2").glob("*_300_*.npz"),
             *(cache_dir / "references_v1").glob("*_300_*.npz")]
    assert len(paths) == 3
    for index, path in enumerate(paths):
        raw = bytearray(path.read_bytes())
        if index:
            raw = raw[: len(raw) // 2]
        else:
            raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        assert cache.read_verified(path, log=lambda message: None) is None
    messages = []
    rebuilt = _make(cache_dir, log=messages.append)
    assert sum("damaged" in m for m in messages) == 3, messages
    assert rebuilt.domain.checksum == tiny.domain.checksum  # retrained bit for bit
    assert rebuilt.protocol == tiny.protocol
    for path in paths:
        assert cache.read_verified(path) is not None  # rewritten whole
    messages.clear()
    _make(cache_dir, log=messages.append)
    assert not any("damaged" in m for m in messages)


# ---------------------------------------------------------------- conditional evaluation
def _perfect_conditional(labels):
    """A "perfect conditional generator": for each requested label, the next real train image of that class."""
    train = np.asarray(data.load("digits", "train", 8), np.float32) / 255.0
    train_labels = np.asarray(data.labels("digits", "train"))
    queues = {c: list(np.flatnonzero(train_labels == c)) for c in range(10)}
    return train[[queues[c].pop(0) for c in labels]]


def test_conditional_scores_perfect_generator_and_shuffled_labels(tiny):
    requested = tiny.requested_labels()
    np.testing.assert_array_equal(requested, data.labels("digits", "test")[:300])
    assert requested.dtype == np.int32
    images = _perfect_conditional(requested)
    good = tiny.evaluate(_fixed_images(images), sample_labels=requested)
    accuracy = tiny.protocol["fid_domain_test_accuracy"]  # the classifier on real test images
    assert abs(good["gan_test_domain"] - accuracy) < 0.05
    assert good["gan_train_domain"] > 0.8  # chance: 0.1
    assert good["fid_domain_classes"] == 10
    shuffled = np.random.default_rng(0).permutation(requested)
    bad = tiny.evaluate(_fixed_images(images), sample_labels=shuffled)
    assert bad["gan_test_domain"] < 0.25 and bad["gan_train_domain"] < 0.35
    assert bad["fid_domain_class_mean"] > good["fid_domain_class_mean"]
    # Unconditional metrics do not depend on the labels.
    assert {k: v for k, v in bad.items() if k in good and "gan_" not in k and "class" not in k} == \
        {k: v for k, v in good.items() if "gan_" not in k and "class" not in k}
    # The references joined the protocol at the first conditional evaluation.
    p = tiny.protocol
    assert p["gan_train_classifier"].startswith("domain_cnn_")
    assert p["gan_train_domain_ref_floor"] > 0.8 > 0.3 > p["gan_train_domain_ref_noise"]
    assert p["gan_test_domain_ref_floor"] > 0.9 and p["gan_test_domain_ref_noise"] < 0.3
    assert p["fid_domain_class_mean_ref_floor"] < p["fid_domain_class_mean_ref_noise"]
    assert good["fid_domain_class_mean"] < p["fid_domain_class_mean_ref_noise"]


def test_conditional_bad_labels_are_one_line_errors(tiny):
    with pytest.raises(ValueError, match="sample_labels of shape"):
        tiny.evaluate(_fixed_images(np.zeros((300, 8, 8, 1), np.float32)), sample_labels=np.zeros(299, int))
    with pytest.raises(ValueError, match="sample_labels of shape"):
        tiny.evaluate(_fixed_images(np.zeros((300, 8, 8, 1), np.float32)), sample_labels=np.full(300, 10))
    labels = tiny.requested_labels()
    assert list(tiny.batch_labels(labels, 2)) == list(labels[200:300])
