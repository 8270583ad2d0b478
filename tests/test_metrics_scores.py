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


# ---------------------------------------------------------------- label-based scores (issue #15)
def _logits_of(probabilities):
    return np.log(np.asarray(probabilities, np.float64))


def test_classes_covered_counts_confident_classes_of_at_least_one_percent():
    from study.metrics import scores

    # 200 samples: 150 confident class 0, 48 confident class 1, 2 confident class 2 (exactly 1%),
    # and class 3 only ever predicted at 0.4 (not confident).
    rows = [[0.9, 0.05, 0.03, 0.02]] * 150 + [[0.1, 0.6, 0.1, 0.2]] * 48 + [[0.1, 0.1, 0.5, 0.3]] * 2
    assert scores.classes_covered(_logits_of(rows)) == 3
    rows[-1] = [0.3, 0.1, 0.2, 0.4]  # class 2 now on 1 sample of 200 (0.5%): not covered; class 3 unconfident
    assert scores.classes_covered(_logits_of(rows)) == 2


def test_mode_and_am_score_match_hand_computations():
    from study.metrics import scores

    p = np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5], [1.0 - 1e-12, 1e-12]])
    prior = np.array([0.25, 0.75])
    marginal = p.mean(axis=0)  # [0.625, 0.375]
    kl_rows = [sum(r[i] * np.log(r[i] / marginal[i]) for i in range(2)) for r in p]
    kl_marginal = sum(marginal[i] * np.log(marginal[i] / prior[i]) for i in range(2))
    expected_ms = np.exp(np.mean(kl_rows) - kl_marginal)
    assert scores.mode_score(_logits_of(p), prior) == pytest.approx(expected_ms, rel=1e-9)
    # = IS x exp(-KL(p(y) || p*)): equal to IS only when the marginal matches the prior
    assert scores.mode_score(_logits_of(p), marginal) == pytest.approx(scores.inception_score(_logits_of(p), 1), rel=1e-9)
    entropy = np.mean([-sum(r[i] * np.log(r[i]) for i in range(2)) for r in p])
    kl_prior = sum(prior[i] * np.log(prior[i] / marginal[i]) for i in range(2))
    assert scores.am_score(_logits_of(p), prior) == pytest.approx(kl_prior + entropy, rel=1e-9)
    # AM is 0 for one-hot samples whose class marginal equals the prior
    one_hot = np.array([[1 - 1e-15, 1e-15], [1e-15, 1 - 1e-15], [1e-15, 1 - 1e-15], [1e-15, 1 - 1e-15]])
    assert scores.am_score(_logits_of(one_hot), prior) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="prior"):
        scores.am_score(_logits_of(p), [0.5, 0.6])
