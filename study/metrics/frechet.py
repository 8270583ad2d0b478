"""Fréchet distance between Gaussians fitted to feature sets (Heusel et al. 2017, eq. 6).

    d² = ||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

Everything here is float64 numpy: the statistics of 2048-d Inception features lose
digits in float32 (compare_gan computed it in float32 inside TF, spec §7; float64 is
strictly closer to the exact value). Covariances use the n-1 normalisation (TFGAN's
and pytorch-fid's `np.cov`).
"""
from __future__ import annotations

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and n-1 sample covariance [d, d], both float64, of features [n, d] (n >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features of shape {features.shape} are not allowed; need [n >= 2, d]")
    mean = features.mean(axis=0)
    centred = features - mean
    covariance = centred.T @ centred / (features.shape[0] - 1)
    return mean, covariance


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues < 0 from rounding -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, root_a: np.ndarray | None = None) -> float:
    """Tr((S_a S_b)^{1/2}) for PSD S_a, S_b, stable when either is singular.

    S_a S_b is similar to the symmetric PSD matrix M = S_a^{1/2} S_b S_a^{1/2}, so the
    trace of its square root is the sum of sqrt(eigenvalues of M): two symmetric
    eigendecompositions instead of a general (complex, ill-conditioned) sqrtm. `root_a`
    (= psd_sqrt(S_a), optional) saves one of them when S_a is fixed (the real statistics).
    """
    root_a = psd_sqrt(sigma_a) if root_a is None else root_a
    middle = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu_a, sigma_a, mu_b, sigma_b, sigma_a_sqrt=None) -> float:
    """Fréchet distance (squared, as FID reports it) between N(mu_a, S_a) and N(mu_b, S_b); >= 0."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise ValueError(
            f"statistics shapes mu {mu_a.shape}/{mu_b.shape}, sigma {sigma_a.shape}/{sigma_b.shape} do not match; "
            "need mu [d] and sigma [d, d] for both"
        )
    difference = mu_a - mu_b
    value = difference @ difference + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sigma_a, sigma_b, sigma_a_sqrt)
    return float(max(value, 0.0))


def frechet_distance_of_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))
