"""Sample-quality scores on features / class probabilities / images.

- `inception_score`: Salimans et al. 2016, exp(E_x KL(p(y|x) || p(y))), mean over splits.
- `classes_covered`: classes a classifier predicts with confidence >= 0.5 for >= 1% of samples.
- `mode_score`: Che et al. 2017 as Xu et al. 2018 compute it,
  exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y))).
- `modified_inception_score`: Gurumurthy et al. 2017 (DeLiGAN) m-IS, within-class diversity,
  exp(E_{x_i} E_{x_j} KL(p(y|x_i) || p(y|x_j))) over pairs of one predicted class, mean over classes.
- `am_score`: Zhou et al. 2018, KL(p*(y) || p(y)) + E_x H(p(y|x)).
- `kernel_inception_distance`: Bińkowski et al. 2018, unbiased MMD² with the cubic
  polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets (the reference
  KID code draws each subset without replacement from each set independently).
- `precision_recall`: improved precision/recall, Kynkäänniemi et al. 2019 (k-NN balls, k=3).
- `ms_ssim` (jax): Wang et al. 2003 multi-scale SSIM, compare_gan's diversity score (spec §7).

Host-side scores use float64 numpy with explicit seeds: deterministic across runs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def inception_score(logits: np.ndarray, splits: int = 10) -> float:
    """IS of class logits [n, classes] (softmax applied here), mean over `splits` equal parts.

    Range [1, classes]: 1 when every p(y|x) equals the marginal, `classes` when each sample
    is one-hot and the classes are used uniformly. compare_gan used splits=1 (spec §7).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"logits shape {logits.shape} with splits={splits} not allowed; need [n, classes], 1 <= splits <= n")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0) + 1e-300)
        scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), axis=1))))
    return float(np.mean(scores))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log softmax of logits [n, classes], float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits shape {logits.shape} not allowed; need [n >= 1, classes]")
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classes_covered(logits: np.ndarray, confidence: float = 0.5, min_fraction: float = 0.01) -> int:
    """How many classes are predicted with p(y|x) >= `confidence` for at least `min_fraction`
    of the samples (a mode-collapsed generator covers 1 class, real digits 10).

    logits [n, classes]. A sample counts for its arg-max class only when that class's
    probability reaches `confidence`; unconfident samples count for no class.
    """
    log_p = log_softmax(logits)
    top = log_p.argmax(axis=1)
    confident = np.exp(log_p[np.arange(len(top)), top]) >= confidence
    counts = np.bincount(top[confident], minlength=log_p.shape[1])
    return int((counts >= min_fraction * log_p.shape[0] - 1e-9).sum())


def _check_prior(prior, classes: int) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (classes,) or np.any(prior <= 0) or not np.isclose(prior.sum(), 1.0, atol=1e-6):
        raise ValueError(f"class prior of shape {prior.shape} not allowed; need [{classes}] positive, summing to 1")
    return prior / prior.sum()


def mode_score(logits: np.ndarray, prior) -> float:
    """Mode Score: exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y))) = IS * exp(-KL(p(y) || p*(y))).
    Higher is better; at most the IS, equal to it when the generated class marginal is p*.

    logits [n, classes] of generated samples (softmax applied here); p(y) = E_x p(y|x);
    prior = p*(y) [classes], the class distribution of the real data (the evaluator passes
    the classifier's mean prediction on real train images, Xu et al.'s p_M(y*)).

    Sources. Che et al. 2017 ("Mode regularized GANs", sec. 4) print
    exp(E_x KL(p(y|x) || p*(y)) - KL(p(y) || p*(y))); but E_x KL(p(y|x) || p*) =
    E_x KL(p(y|x) || p(y)) + KL(p(y) || p*) for any p*, so that printed form is exactly the
    Inception Score and ignores the data's labels. Xu et al. 2018 ("An empirical study on
    evaluation metrics of generative adversarial networks", their list of sample-based
    metrics, the definition their study uses) write MS = exp(E_x KL(p_M(y|x) || p_M(y)) - KL(p_M(y) || p_M(y*)))
    with p_M(y*) the classifier's marginal over real samples, and their code
    (github.com/xuqiantong/GAN-Metrics, metric.py `mode_score(X, Y)`: kl1 against X.mean(0),
    kl2 = KL(X.mean(0) || Y.mean(0))) computes the same. That is the form here: IS discounted
    by how far the generated class marginal is from the data's.
    """
    log_p = log_softmax(logits)
    prior = _check_prior(prior, log_p.shape[1])
    p = np.exp(log_p)
    marginal = p.mean(axis=0)
    log_marginal = np.log(np.maximum(marginal, 1e-300))
    expected_kl = float(np.mean(np.sum(p * (log_p - log_marginal), axis=1)))
    marginal_kl = float(np.sum(np.where(marginal > 0, marginal * (log_marginal - np.log(prior)), 0.0)))
    return float(np.exp(expected_kl - marginal_kl))


def modified_inception_score(logits: np.ndarray) -> float:
    """Modified Inception Score, m-IS (Gurumurthy et al. 2017, "DeLiGAN: GANs for diverse and
    limited data", its "modified Inception-score" subsection): within-class diversity of
    generated samples. Higher is better.

        m-IS_c = exp(E_{x_i} E_{x_j} KL(p(y|x_i) || p(y|x_j))),  x_i, x_j of class c
        m-IS   = mean over the classes c that occur of m-IS_c

    logits [n, classes] of generated samples (softmax applied here). Classes are formed as in
    the authors' code (github.com/val-iisc/deligan, src/modified_inception_scores): the
    samples whose arg-max predicted class is c; the expectations run over all ordered pairs
    (i, j) of that group, i = j included (its KL is 0), i.e. with P_c [n_c, classes] the
    group's probabilities: mean_i (sum_y P_i log P_i - mean_j sum_y P_i log P_j). Classes
    no sample is predicted as are left out (the authors' per-class loop would give NaN);
    a class predicted for one sample only scores 1. So m-IS is 1 for any set of identical
    images (total collapse within every class) and grows with how differently the
    classifier sees the samples of one class; it does not reward covering more classes
    (that is what IS / classes_covered measure). Nor does it measure quality: samples the
    classifier is unsure about differ a lot in p(y|x). Measured with the digits classifier at
    8x8 (300 samples): real train images 1.14, uniform noise 2.27, the mean image repeated 1.00;
    read it beside a quality measure (FID, GAN-test, the 1-NN fake half).
    """
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    predicted = log_p.argmax(axis=1)
    per_class = []
    for c in np.unique(predicted):
        group_p, group_log = p[predicted == c], log_p[predicted == c]
        self_term = np.sum(group_p * group_log, axis=1)  # sum_y P_i log P_i, [n_c]
        cross_term = (group_p @ group_log.T).mean(axis=1)  # mean_j sum_y P_i log P_j, [n_c]
        per_class.append(np.exp(np.mean(self_term - cross_term)))
    return float(np.mean(per_class))


def am_score(logits: np.ndarray, prior) -> float:
    """AM Score (Zhou et al. 2018, "Activation maximization GANs", eq. 9):
    KL(p*(y) || p(y)) + E_x H(p(y|x)). Lower is better; 0 for confidently classified samples
    whose class marginal equals the data's.

    logits [n, classes] of generated samples; p(y) = E_x p(y|x); prior = p*(y) [classes].
    """
    log_p = log_softmax(logits)
    prior = _check_prior(prior, log_p.shape[1])
    p = np.exp(log_p)
    marginal = np.maximum(p.mean(axis=0), 1e-300)
    prior_kl = float(np.sum(prior * (np.log(prior) - np.log(marginal))))
    entropy = float(np.mean(-np.sum(p * log_p, axis=1)))
    return prior_kl + entropy


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    features_real: np.ndarray, features_fake: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> float:
    """Mean over subsets of the unbiased MMD² between features [n, d] and [m, d] (cubic polynomial kernel).

    subset_size is capped at min(n, m). Can be slightly negative for identical distributions.
    """
    x = np.asarray(features_real, np.float64)
    y = np.asarray(features_fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature shapes {x.shape} and {y.shape} not allowed; need [n, d] and [m, d]")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    rng = np.random.default_rng(seed)
    # Small sets: one Gram matrix per pair of sets, subsets index into it (same numbers, far less work).
    full = x.shape[0] + y.shape[0] <= 6000
    if full:
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    if size == x.shape[0] == y.shape[0]:
        num_subsets = 1  # every subset is the whole of both sets: the MMD² does not depend on the order
    values = []
    for _ in range(num_subsets):
        ix = rng.choice(x.shape[0], size, replace=False)
        iy = rng.choice(y.shape[0], size, replace=False)
        if full:
            a, b, c = k_xx[np.ix_(ix, ix)], k_yy[np.ix_(iy, iy)], k_xy[np.ix_(ix, iy)]
        else:
            a, b, c = _polynomial_kernel(x[ix], x[ix]), _polynomial_kernel(y[iy], y[iy]), _polynomial_kernel(x[ix], y[iy])
        off_diagonal = size * (size - 1)
        mmd2 = (a.sum() - np.trace(a)) / off_diagonal + (b.sum() - np.trace(b)) / off_diagonal - 2.0 * c.mean()
        values.append(mmd2)
    return float(np.mean(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _knn_radii(features: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row."""
    radii = np.empty(features.shape[0])
    for start in range(0, features.shape[0], block):
        d = _squared_distances(features[start : start + block], features)
        radii[start : start + block] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return radii


def _coverage(queries: np.ndarray, support: np.ndarray, radii: np.ndarray, block: int = 1024) -> float:
    """Fraction of queries inside at least one support ball."""
    inside = 0
    for start in range(0, queries.shape[0], block):
        d = _squared_distances(queries[start : start + block], support)
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / queries.shape[0]


def precision_recall(features_real: np.ndarray, features_fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision (fake inside the real manifold) and recall (real inside the fake manifold), in [0, 1]."""
    x = np.asarray(features_real, np.float64)
    y = np.asarray(features_fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) <= k:
        raise ValueError(f"feature shapes {x.shape} and {y.shape} not allowed; need [n > k, d] and [m > k, d] with k={k}")
    precision = _coverage(y, x, _knn_radii(x, k))
    recall = _coverage(x, y, _knn_radii(y, k))
    return precision, recall


# ---------------------------------------------------------------- MS-SSIM (jax, on device)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, 5 scales
MS_SSIM_MIN_SIDE = 4  # a scale fits when its side is >= 4 px (tiny images: fewer scales, weights renormalised)


def ms_ssim_scales(side: int) -> int:
    """Number of scales used for square images of `side` pixels: as many of the 5 as keep the side >= 4."""
    scales = 1
    while scales < 5 and side // (2**scales) >= MS_SSIM_MIN_SIDE:
        scales += 1
    return scales


def _gaussian_window(size: int, sigma: float) -> jnp.ndarray:
    offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    g = jnp.exp(-(offsets**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter(x: jnp.ndarray, window: jnp.ndarray) -> jnp.ndarray:
    """Separable VALID Gaussian filter of x [..., H, W]."""
    size = window.shape[0]
    h, w = x.shape[-2], x.shape[-1]
    rows = sum(window[i] * x[..., i : h - size + 1 + i, :] for i in range(size))
    return sum(window[i] * rows[..., :, i : w - size + 1 + i] for i in range(size))


def _ssim_terms(a: jnp.ndarray, b: jnp.ndarray, max_value: float):
    """Mean luminance*contrast*structure and contrast*structure of a, b [..., H, W, C] (compare_gan's msssim.py).

    Filter size min(11, H, W), sigma 1.5 scaled with it, K1=0.01, K2=0.03.
    """
    size = min(11, a.shape[-3], a.shape[-2])
    window = _gaussian_window(size, 1.5 * size / 11.0)
    a = jnp.moveaxis(a, -1, -3)
    b = jnp.moveaxis(b, -1, -3)
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    mu_a, mu_b = _filter(a, window), _filter(b, window)
    var_a = _filter(a * a, window) - mu_a**2
    var_b = _filter(b * b, window) - mu_b**2
    cov = _filter(a * b, window) - mu_a * mu_b
    cs = (2.0 * cov + c2) / (var_a + var_b + c2)
    ssim = (2.0 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs
    axes = (-3, -2, -1)
    return ssim.mean(axis=axes), cs.mean(axis=axes)


def _downsample(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 average pooling of [..., H, W, C] (H, W even after cropping)."""
    h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
    x = x[..., :h, :w, :]
    return (x[..., 0::2, 0::2, :] + x[..., 1::2, 0::2, :] + x[..., 0::2, 1::2, :] + x[..., 1::2, 1::2, :]) / 4.0


def ms_ssim(a: jnp.ndarray, b: jnp.ndarray, max_value: float = 1.0) -> jnp.ndarray:
    """MS-SSIM of image pairs a, b [..., H, W, C] in [0, max_value] -> [...]; 1 for identical images.

    Scales: `ms_ssim_scales(min(H, W))`; weights: the first ones of MS_SSIM_WEIGHTS, renormalised.
    """
    scales = ms_ssim_scales(min(a.shape[-3], a.shape[-2]))
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales]) / np.sum(MS_SSIM_WEIGHTS[:scales])
    value = 1.0
    for scale in range(scales):
        ssim, cs = _ssim_terms(a, b, max_value)
        last = scale == scales - 1
        # Negative cs/ssim (anti-correlated patches) raised to fractional powers: clip at 0 as msssim.py's product does not.
        value = value * jnp.maximum(ssim if last else cs, 0.0) ** weights[scale]
        if not last:
            a, b = _downsample(a), _downsample(b)
    return value


@functools.partial(jax.jit, static_argnames=("max_value",))
def ms_ssim_diversity(images: jnp.ndarray, max_value: float = 1.0) -> jnp.ndarray:
    """Mean MS-SSIM over all ordered pairs of distinct images of one batch [B, H, W, C] (lower = more diverse)."""
    with jax.default_matmul_precision("highest"):
        n = images.shape[0]
        pairwise = jax.vmap(lambda x: ms_ssim(jnp.broadcast_to(x, images.shape), images, max_value))(images)  # [B, B]
        return (pairwise.sum() - jnp.trace(pairwise)) / (n * (n - 1))
