"""Fréchet distance, IS, KID, precision/recall, MS-SSIM on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from study.metrics import frechet, scores


def _random_covariance(rng, d, rank):
    a = rng.normal(size=(d, rank))
    return a @ a.T / rank


def test_frechet_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for rank in (40, 10):  # full rank and singular
        mu_a, mu_b = rng.normal(size=20), rng.normal(size=20)
        s_a, s_b = _random_covariance(rng, 20, rank), _random_covariance(rng, 20, rank)
        root = scipy.linalg.sqrtm(s_a @ s_b)
        expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root).real
        assert frechet.frechet_distance(mu_a, s_a, mu_b, s_b) == pytest.approx(expected, rel=1e-7, abs=1e-7)


def test_frechet_zero_for_identical_statistics_and_n_minus_1_covariance():
    features = np.random.default_rng(1).normal(size=(50, 30))
    mu, sigma = frechet.feature_statistics(features)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False))  # np.cov normalises by n-1
    assert frechet.frechet_distance(mu, sigma, mu, sigma) < 1e-9
    assert frechet.frechet_distance_of_features(features, features + 1.0) == pytest.approx(30.0, rel=1e-9)


def test_inception_score_bounds():
    uniform = np.zeros((100, 10))
    assert scores.inception_score(uniform, splits=1) == pytest.approx(1.0)
    one_hot = np.full((100, 10), -1e4)
    one_hot[np.arange(100), np.arange(100) % 10] = 0.0
    assert scores.inception_score(one_hot, splits=1) == pytest.approx(10.0, rel=1e-6)
    assert scores.inception_score(one_hot, splits=10) == pytest.approx(10.0, rel=1e-6)


def test_kid_near_zero_for_same_distribution_positive_when_shifted():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = scores.kernel_inception_distance(x, y, num_subsets=20, subset_size=200)
    shifted = scores.kernel_inception_distance(x, y + 1.0, num_subsets=20, subset_size=200)
    assert abs(same) < 0.02 * shifted
    assert shifted > 0.1


def test_precision_recall_identical_sets_and_disjoint_sets():
    x = np.random.default_rng(3).normal(size=(100, 8))
    assert scores.precision_recall(x, x.copy()) == (1.0, 1.0)
    assert scores.precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_ms_ssim_identical_is_one_and_noise_is_low():
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(4, 32, 32, 3)).astype(np.float32)
    assert scores.ms_ssim_scales(32) == 4 and scores.ms_ssim_scales(16) == 3 and scores.ms_ssim_scales(128) == 5
    np.testing.assert_allclose(np.asarray(scores.ms_ssim(images, images)), 1.0, atol=1e-5)
    assert float(scores.ms_ssim_diversity(np.repeat(images[:1], 4, axis=0))) == pytest.approx(1.0, abs=1e-5)
    assert float(scores.ms_ssim_diversity(images)) < 0.2
