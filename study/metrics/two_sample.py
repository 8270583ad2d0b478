"""1-nearest-neighbour two-sample test between real and generated feature sets.

Lopez-Paz & Oquab 2017 ("Revisiting classifier two-sample tests") use the accuracy of a
classifier telling two samples apart as a two-sample statistic; Xu et al. 2018 ("An
empirical study on evaluation metrics of generative adversarial networks") recommend the
leave-one-out 1-NN classifier on the union of real and generated features as a GAN measure,
with its accuracy on the real points and on the generated points reported apart
(their code, github.com/xuqiantong/GAN-Metrics metric.py `knn`: acc, acc_t, acc_f).

    accuracy = 1/(n+m) sum over the n real and m generated points z of
               [label of z's nearest other point == label of z]

0.5: the two samples are indistinguishable (the H0 value; for n = m it is (n-1)/(2n-1) in
expectation, a hair under 0.5); 1.0: disjoint. Below 0.5 means every generated point sits
on a real one (memorised data: each real point's nearest neighbour is its copy).
Real half (accuracy on the real points) high: generated samples miss parts of the data
(mode dropping); fake half high: generated samples lie off the data (poor quality).

Host-side float64 numpy, deterministic: Euclidean distance, blocked so memory stays
O(block * (n + m)); cost O((n + m)^2 d), as precision_recall's.
"""
from __future__ import annotations

import numpy as np

# Distances within this relative margin of the minimum are ties: the Gram-form squared distance
# |a|^2 + |b|^2 - 2 a.b rounds with an error of a few ulps of |a|^2 + |b|^2, so duplicated points
# (a collapsed generator, the mean-image reference) must not be split by rounding noise.
TIE_RELATIVE_TOLERANCE = 1e-9


def one_nn_two_sample(features_real: np.ndarray, features_fake: np.ndarray, block: int = 1024) -> dict[str, float]:
    """Leave-one-out 1-NN accuracy of telling real from generated features (Euclidean).

    features_real [n, d], features_fake [m, d], n, m >= 1, n + m >= 3.
    Returns {"accuracy": over all n + m points, "real_accuracy": over the n real points,
    "fake_accuracy": over the m generated points}, each in [0, 1].

    Ties: when several points are nearest (within TIE_RELATIVE_TOLERANCE), a point scores
    the fraction of them that share its label, which is the expected accuracy under a
    uniformly random choice among them: deterministic, and independent of the order of
    the points (a rule like "lowest index wins" would favour whichever set comes first).
    """
    x = np.asarray(features_real, np.float64)
    y = np.asarray(features_fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 1 or len(x) + len(y) < 3:
        raise ValueError(f"feature shapes {x.shape} and {y.shape} not allowed; need [n >= 1, d] and [m >= 1, d], n + m >= 3")
    z = np.concatenate([x, y])
    is_real = np.arange(len(z)) < len(x)
    squared = (z * z).sum(axis=1)
    correct = np.empty(len(z))
    for start in range(0, len(z), block):
        rows = np.arange(start, min(start + block, len(z)))
        d = np.maximum(squared[rows, None] + squared[None, :] - 2.0 * z[rows] @ z.T, 0.0)
        d[np.arange(len(rows)), rows] = np.inf  # leave the point itself out
        nearest = d.min(axis=1, keepdims=True)
        tolerance = TIE_RELATIVE_TOLERANCE * (squared[rows, None] + squared.max())
        tied = d <= nearest + tolerance
        same = tied & (is_real[None, :] == is_real[rows, None])
        correct[rows] = same.sum(axis=1) / tied.sum(axis=1)
    return {"accuracy": float(correct.mean()), "real_accuracy": float(correct[is_real].mean()),
            "fake_accuracy": float(correct[~is_real].mean())}
