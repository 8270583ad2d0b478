"""Domain classifier and Evaluator end to end on the embedded digits dataset (no Inception weights)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study import data
from study.metrics import Evaluator, domain


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("gan_study_cache")


@pytest.fixture(scope="module")
def evaluator(cache, monkeypatch_module):
    return Evaluator(dataset="digits", split="test", image_size=16, num_samples=300, data_range=(0.0, 1.0),
                     cache_dir=cache, batch_size=100)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FID_INCEPTION_WEIGHTS", raising=False)
        yield patch


@pytest.fixture(scope="module")
def real_images():
    return jnp.asarray(np.asarray(data.load("digits", "test", 16), np.float32) / 255.0)


def _real_fn(real, scale=1.0, shift=0.0):
    def sample_fn(batch_index, batch_size):
        return real[(jnp.arange(batch_size) + batch_index * batch_size) % real.shape[0]] * scale + shift
    return sample_fn


def test_domain_classifier_accurate_and_deterministic(evaluator, cache, tmp_path):
    assert evaluator.domain.test_accuracy > 0.9
    assert evaluator.protocol["fid_domain_test_accuracy"] == evaluator.domain.test_accuracy
    retrained = domain.domain_extractor("digits", 16, 1, tmp_path, log=lambda message: None)
    assert retrained.checksum == evaluator.domain.checksum  # bit-identical weights from a fresh training
    assert domain.domain_extractor("digits", 16, 1, cache).checksum == evaluator.domain.checksum  # from the disk cache


def test_labels_follow_the_dataset_split():
    from sklearn.datasets import load_digits

    raw = load_digits()
    test_images = np.asarray(data.load("digits", "test", 8))[..., 0]
    scaled = np.rint(raw.images * (255.0 / 16.0)).astype(np.uint8)
    labels = domain.digits_labels("test")
    for image, label in zip(test_images[:20], labels[:20]):
        matches = np.flatnonzero((scaled == image).all(axis=(1, 2)))
        assert label in raw.target[matches]


def test_real_images_score_well_noise_badly(evaluator, real_images):
    real = evaluator.evaluate(_real_fn(real_images))
    noise = evaluator.evaluate(lambda i, b: jax.random.uniform(jax.random.PRNGKey(i), (b, 16, 16, 1)))
    assert set(real) == {"fid_domain", "kid_domain", "is_domain", "precision_domain", "recall_domain", "ms_ssim",
                         "classes_covered_domain", "mode_score_domain", "am_score_domain", "m_is_domain",
                         "one_nn_accuracy_domain", "one_nn_real_accuracy_domain", "one_nn_fake_accuracy_domain"}
    # Real images scored against themselves: every point has its exact copy -> 1-NN accuracy 0 (memorisation).
    assert real["one_nn_accuracy_domain"] < 0.05 and noise["one_nn_accuracy_domain"] > 0.99
    assert real["classes_covered_domain"] == 10 and real["am_score_domain"] < noise["am_score_domain"]
    assert real["fid_domain"] < 1e-6 and noise["fid_domain"] > 100.0
    assert real["precision_domain"] == real["recall_domain"] == 1.0
    assert noise["precision_domain"] < 0.1
    assert real["is_domain"] > 8.0 > noise["is_domain"]
    assert noise["kid_domain"] > 10 * abs(real["kid_domain"])
    assert 0.0 < noise["ms_ssim"] < real["ms_ssim"] < 1.0
    assert evaluator.evaluate(_real_fn(real_images)) == real  # bit-identical on repeat


def test_protocol_and_tanh_range(evaluator, cache, real_images):
    protocol = evaluator.protocol
    for key in ("fid_features", "fid_weights_sha256", "fid_resize", "fid_precision", "fid_real_samples",
                "fid_fake_samples"):
        assert isinstance(protocol[key], (str, int, float))
    assert protocol["fid_features"] == "none" and protocol["fid_real_samples"] == 300 and evaluator.split == "test"
    # Protocol columns go into every results row beside the config: no name may be a config field.
    from study.trial.config import TrialConfig

    assert not set(protocol) & set(TrialConfig.field_names())
    tanh = Evaluator(dataset="digits", split="test", image_size=16, num_samples=300, data_range=(-1.0, 1.0),
                     cache_dir=cache, batch_size=100)
    from_tanh = tanh.evaluate(_real_fn(real_images, 2.0, -1.0))
    from_unit = evaluator.evaluate(_real_fn(real_images))
    for name in from_unit:
        assert from_tanh[name] == pytest.approx(from_unit[name], abs=1e-4)


def test_bad_arguments_are_one_line_errors(cache):
    with pytest.raises(ValueError, match="num_samples=5000"):
        Evaluator(dataset="digits", image_size=16, num_samples=5000, cache_dir=cache)
    with pytest.raises(ValueError, match="data_range"):
        Evaluator(dataset="digits", image_size=16, num_samples=300, data_range=(1.0, 0.0), cache_dir=cache)
