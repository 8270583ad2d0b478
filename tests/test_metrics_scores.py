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


# ---------------------------------------------------------------- label-based scores
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


# ---------------------------------------------------------------- m-IS, 1-NN two-sample test, conditional
def test_modified_inception_score_matches_hand_computation():
    # Class 0 (arg-max 0): rows a, b; class 1: rows c, d, e. m-IS = mean_c exp(mean_{i,j in c} KL(p_i || p_j)).
    a, b = [0.9, 0.1, 0.0 + 1e-300], [0.6, 0.3, 0.1]
    c, d, e = [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3]
    p = np.array([a, c, b, d, e])

    def kl(u, v):
        return sum(ui * np.log(ui / vi) for ui, vi in zip(u, v) if ui > 0)

    class0 = np.exp((kl(a, b) + kl(b, a)) / 4)  # 4 ordered pairs, the two with i = j are 0
    group = [c, d, e]
    class1 = np.exp(sum(kl(u, v) for u in group for v in group) / 9)
    assert scores.modified_inception_score(_logits_of(p)) == pytest.approx((class0 + class1) / 2, rel=1e-9)
    assert scores.modified_inception_score(_logits_of([a] * 7)) == pytest.approx(1.0)  # identical samples
    assert scores.modified_inception_score(_logits_of([a, c])) == pytest.approx(1.0)  # one sample per class


def test_one_nn_hand_examples_with_ties():
    from study.metrics.two_sample import one_nn_two_sample

    # 1-d: real 0, 1, 10; fake 1.1, 5, 11. Nearest other point: 0->1 (real, right), 1->1.1 (fake, wrong),
    # 10->11 (wrong), 1.1->1 (wrong), 5->1.1 (fake, right), 11->10 (wrong).
    out = one_nn_two_sample(np.array([[0.0], [1.0], [10.0]]), np.array([[1.1], [5.0], [11.0]]))
    assert out == pytest.approx({"accuracy": 2 / 6, "real_accuracy": 1 / 3, "fake_accuracy": 1 / 3})
    # Ties: real 0, 2; fake 4, 8. Real 2 is equally near real 0 and fake 4: it scores 1/2.
    out = one_nn_two_sample(np.array([[0.0], [2.0]]), np.array([[4.0], [8.0]]))
    assert out == pytest.approx({"accuracy": (1 + 0.5 + 0 + 1) / 4, "real_accuracy": 0.75, "fake_accuracy": 0.5})
    # Swapping the roles of the sets swaps the halves (no order bias in the tie rule).
    swapped = one_nn_two_sample(np.array([[4.0], [8.0]]), np.array([[0.0], [2.0]]))
    assert swapped["real_accuracy"] == 0.5 and swapped["fake_accuracy"] == 0.75
    # A memorising generator (copies of the real points) scores 0: each point's nearest is its copy.
    x = np.random.default_rng(5).normal(size=(20, 4))
    assert one_nn_two_sample(x, x.copy())["accuracy"] == 0.0
    with pytest.raises(ValueError, match="feature shapes"):
        one_nn_two_sample(x, x[:, :3])


def test_one_nn_half_for_one_distribution_one_for_disjoint():
    from study.metrics.two_sample import one_nn_two_sample

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = one_nn_two_sample(x, y)
    # Under H0 the accuracy has mean (n-1)/(2n-1) = 0.499 and, measured over 300 seeds of this
    # setting, std 0.024 (halves: 0.031). 0.1 is 4 std: fails only when the test is broken.
    assert abs(same["accuracy"] - 0.5) < 0.1
    assert abs(same["real_accuracy"] - 0.5) < 0.13 and abs(same["fake_accuracy"] - 0.5) < 0.13
    assert one_nn_two_sample(x, y + 100.0) == {"accuracy": 1.0, "real_accuracy": 1.0, "fake_accuracy": 1.0}
    # A collapsed generator (one point repeated): its copies find each other, real points find real ones.
    collapsed = one_nn_two_sample(x, np.repeat(y[:1], 300, axis=0))
    assert collapsed["fake_accuracy"] == 1.0 and collapsed["real_accuracy"] > 0.99


def test_gan_test_and_class_fid_by_hand():
    from study.metrics import conditional

    logits = _logits_of([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])
    assert conditional.gan_test(logits, [0, 1, 2, 2]) == 0.75
    with pytest.raises(ValueError, match="requested_labels"):
        conditional.gan_test(logits, [0, 1, 2, 3])
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    real_labels, fake_labels = np.arange(40) % 3, np.arange(30) % 3
    fake_labels[fake_labels == 2] = 1  # class 2 never requested: not scored
    per_class = [frechet.frechet_distance_of_features(real[real_labels == c], fake[fake_labels == c]) for c in (0, 1)]
    out = conditional.class_fid(real, real_labels, fake, fake_labels, 3)
    assert out == pytest.approx({"mean": np.mean(per_class), "max": max(per_class), "classes": 2.0}, rel=1e-12)
