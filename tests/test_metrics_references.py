"""Reference points (issue #15), label-based scores on real digits, and self-verifying caches (#19).

One evaluator at the tiny protocol (digits, test split, 300 samples, 8x8), its own cache folder.
"""
from __future__ import annotations

import numpy as np
import pytest

from study import data
from study.metrics import Evaluator, cache, evaluator as evaluator_module


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
    # The figures measured by hand in issue #15 (floor 6.3, mean image 421.3; noise ~250 by seed).
    assert 5.0 < p["fid_domain_ref_floor"] < 8.0
    assert 400.0 < p["fid_domain_ref_mean_image"] < 440.0
    assert 200.0 < p["fid_domain_ref_noise"] < 300.0
    assert p["classes_covered_domain_ref_floor"] == 10
    assert p["classes_covered_domain_ref_mean_image"] <= 1  # one image, repeated: at most one class
    assert p["am_score_domain_ref_floor"] < p["am_score_domain_ref_noise"]  # AM: lower is better
    assert p["mode_score_domain_ref_floor"] > p["mode_score_domain_ref_noise"]  # Mode Score: higher is better
    assert p["is_domain_ref_mean_image"] == pytest.approx(1.0)


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
    assert refs == {k: v for k, v in tiny.protocol.items() if "_ref_" in k} and len(refs) == 18
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
