"""Evaluator: FID/IS/KID/precision/recall/MS-SSIM of a generator against one data split.

Real-side features are computed once and cached on disk (npz) keyed by dataset, split,
sample count, image size, data range and extractor checksum. Fake-side features come
from jit-compiled fixed-shape batches on the device; all statistics are float64 numpy
with fixed seeds, so the same samples give bit-identical metrics on CPU.

Metric names: `fid`, `kid`, `is`, `precision`, `recall` (standard FID Inception pool3 /
logits; only when the weights are present), `fid_domain`, `kid_domain`, `is_domain`,
`precision_domain`, `recall_domain` (domain feature space, see study.metrics.domain; NOT
comparable with published FIDs), `ms_ssim` (mean over ordered pairs of distinct
generated images, batches of 64, up to 5 batches; spec §7); with the digits classifier also
`classes_covered_domain`, `mode_score_domain`, `am_score_domain` (study.metrics.scores; the
class prior p*(y) is the classifier's mean prediction on the reference train images).
In every feature space (no suffix: Inception, `_domain`: domain network) also
`one_nn_accuracy`, `one_nn_real_accuracy`, `one_nn_fake_accuracy` (leave-one-out 1-NN
two-sample test, Lopez-Paz & Oquab 2017, Xu et al. 2018; study.metrics.two_sample; 0.5 =
indistinguishable, 1 = disjoint) and, where the network classifies (Inception; the digits
classifier), `m_is` (Modified Inception Score, Gurumurthy et al. 2017: within-class
diversity, scores.modified_inception_score).

Conditional generators: `evaluate(sample_fn, sample_labels)` with the labels each
sample was generated for (normally `requested_labels()`, the evaluation split's own labels)
adds (Shmelkov et al. 2018) `gan_test_domain` (digits classifier's accuracy on the samples
w.r.t. their labels), `gan_train_domain` (accuracy on the real evaluation images of a domain
CNN trained on the labelled samples), `fid_domain_class_mean` / `fid_domain_class_max` (per-class domain FID,
mean and worst class) and `fid_domain_classes` (classes scored); see study.metrics.conditional.

Reference points: per protocol the evaluator also scores three fixed image
sets with the same code, cached on disk, and puts them in `protocol` (hence in every
results row) as `<metric>_ref_floor` (real train images vs the evaluation split, same
count: the best a generator can hope for), `<metric>_ref_noise` (uniform noise in [0, 1])
and `<metric>_ref_mean_image` (the mean train image repeated: total mode collapse), for
the metrics in REFERENCE_METRICS. A trial that does not beat `_ref_noise` has not learned.
The conditional scores get the same three references (CONDITIONAL_REFERENCE_METRICS; the
floor's labels are its train labels, noise and mean image get `requested_labels()`), computed
and cached at the first conditional evaluation (they train three GAN-train classifiers, a cost
unconditional studies should not pay) and added to `protocol` from then on, together with
`gan_train_classifier` (the GAN-train recipe).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from study import data
from study.metrics import cache, conditional, domain, frechet, scores, two_sample
from study.metrics import inception as inception_lib

REFERENCE_KINDS = ("floor", "noise", "mean_image")
# Metrics that get reference points: the FID-like ones and the label-based ones.
REFERENCE_METRICS = ("fid_domain", "kid_domain", "is_domain", "classes_covered_domain", "mode_score_domain",
                     "am_score_domain", "fid", "kid", "is",
                     "m_is_domain", "one_nn_accuracy_domain", "m_is", "one_nn_accuracy")
# Scores of conditional evaluations that get reference points (computed at the first one).
CONDITIONAL_REFERENCE_METRICS = ("gan_test_domain", "gan_train_domain", "fid_domain_class_mean")
REFERENCE_VERSION = "references-v2"  # bump when the reference image sets or their scoring change
NOISE_SEED = 0

_WARNED: set[str] = set()  # once-per-process warnings (the only module state)


def default_cache_dir() -> pathlib.Path:
    """$GAN_STUDY_CACHE, else ~/.cache/gan_study."""
    return pathlib.Path(os.environ.get("GAN_STUDY_CACHE") or pathlib.Path.home() / ".cache" / "gan_study")


def warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _to_unit_range(images: jnp.ndarray, data_range: tuple[float, float]) -> jnp.ndarray:
    low, high = data_range
    return jnp.clip((images.astype(jnp.float32) - low) / (high - low), 0.0, 1.0)


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Evaluator:
    """Evaluates generators of `dataset` against `num_samples` images of `split`.

    Args:
      dataset, split, image_size: the real images (study.data.load); image_size None -> native.
      num_samples: real and fake sample count (None -> the dataset's paper FID count).
      data_range: range of the generated images, (0, 1) or (-1, 1) (TAN ablation).
      cache_dir: None -> $GAN_STUDY_CACHE or ~/.cache/gan_study.
      inception_weights: pytorch-fid weights file; None -> $FID_INCEPTION_WEIGHTS or the
        cache dir; absent -> domain metrics only (one warning per process).
      batch_size: generator / feature batch (fixed shape: one compilation).
      resize: "tf" (TF1 resize_bilinear, the paper's) or "torch" (pytorch-fid's).
      is_splits: Inception Score splits (compare_gan: 1).
    """

    def __init__(
        self,
        dataset: str = "digits",
        split: str = "test",
        image_size: int | None = None,
        num_samples: int | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        cache_dir: str | os.PathLike | None = None,
        inception_weights: str | os.PathLike | None = None,
        batch_size: int = 100,
        resize: str = "tf",
        is_splits: int = 1,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        pr_k: int = 3,
        log: Callable[[str], None] | None = None,
    ):

        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        info = data.info(dataset)
        self._check_sizes(info, dataset, split, image_size, num_samples, data_range, batch_size, pr_k)
        self.is_splits, self.kid_subsets, self.kid_subset_size, self.pr_k = is_splits, kid_subsets, kid_subset_size, pr_k
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dataset, self.split = dataset, split
        self._log = log
        real_uint8 = self._load_real(info)
        self._conditional_protocol: dict | None = None  # filled at the first conditional evaluation
        self._set_up_domain(real_uint8, log)
        self._set_up_inception(real_uint8, inception_weights, resize)
        self._prior_domain = None
        self.protocol = self._protocol(self._references(real_uint8, log))

    def _check_sizes(self, info, dataset: str, split: str, image_size, num_samples, data_range, batch_size: int,
                     pr_k: int) -> None:
        """image_size, channels, num_samples, data_range and batch_size, or a one-line ValueError:
        precision/recall's k-NN radii need more than 2 (k + 1) samples; the split caps the count."""
        self.image_size = int(image_size or info.image_size)
        self.channels = info.channels
        available = info.split_size(split)
        self.num_samples = int(num_samples or min(info.fid_samples, available))
        if not 2 * (pr_k + 1) <= self.num_samples <= available:
            raise ValueError(f"num_samples={self.num_samples} not allowed for {dataset}/{split}; need {2 * (pr_k + 1)}..{available}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} not allowed; need >= 1")
        low, high = (float(v) for v in data_range)
        if not high > low:
            raise ValueError(f"data_range={data_range} not allowed; need (low, high) with high > low, e.g. (0, 1) or (-1, 1)")
        self.data_range = (low, high)
        self.batch_size = int(batch_size)

    def _load_real(self, info) -> np.ndarray:
        """The first num_samples evaluation images (uint8) and, for a labelled dataset, their labels."""
        real_uint8 = np.asarray(data.load(self.dataset, self.split, self.image_size))[: self.num_samples]
        self._real_uint8 = real_uint8  # GAN-train tests on these
        self.num_classes = int(info.num_classes)
        # Labels of the evaluation images (None: an unlabelled dataset, no conditional scores).
        self._real_labels = (np.asarray(data.labels(self.dataset, self.split), np.int32)[: self.num_samples]
                             if self.num_classes else None)
        return real_uint8

    def _set_up_domain(self, real_uint8: np.ndarray, log) -> None:
        """The domain feature network (trained and cached on first use), its fixed-shape batch
        function for generated images in data_range, and the real images' features."""
        self.domain = domain.domain_extractor(self.dataset, self.image_size, self.channels, self.cache_dir, log)
        self._domain_batch = jax.jit(lambda params, x: _domain_apply(params, _to_unit_range(x, self.data_range)))
        self._real_domain = self._real_features(
            "domain", self.domain.checksum, real_uint8,
            jax.jit(lambda params, x: _domain_apply(params, x)), self.domain.params)

    def _set_up_inception(self, real_uint8: np.ndarray, inception_weights, resize: str) -> None:
        """The FID Inception network and the real images' features when its weights are found;
        else `inception` is None and one warning per process says the FIDs are domain-only."""
        self.inception = None
        weights_path = inception_lib.find_weights(inception_weights, self.cache_dir)
        if weights_path is None:
            warn_once("no-inception", (
                "FID Inception weights not found; reporting domain metrics only (fid_domain, kid_domain, "
                f"is_domain: NOT comparable with published FIDs). {inception_lib.WHERE_TO_PUT_WEIGHTS}"))
            return
        self.inception = inception_lib.FIDInception.from_file(weights_path, resize=resize)
        self._inception_batch = jax.jit(
            lambda params, x: self.inception.apply_params(params, _to_unit_range(x, self.data_range)))
        self._real_inception = self._real_features(
            "inception", self.inception.sha256 + resize, real_uint8,
            jax.jit(self.inception.apply_params), self.inception.params)

    def _protocol(self, references: dict[str, float]) -> dict:
        """The evaluation protocol every results row carries: feature networks, sample counts,
        metric settings, and the reference points."""
        return {
            "fid_features": "inception_2015_12_05_pool3_2048" if self.inception else "none",
            "fid_weights_sha256": self.inception.sha256 if self.inception else "",
            "fid_resize": self.inception.resize_name if self.inception else "",
            "fid_input_scaling": self.inception.scaling_name if self.inception else "",
            "fid_precision": "float32_highest_stats_float64",
            "fid_real_samples": self.num_samples,
            "fid_fake_samples": self.num_samples,
            # No "fid_split": the split is the trial config's fid_split column, and protocol keys
            # are merged into rows beside the config (a duplicate key fails the row, study.storage.store).
            "fid_domain_features": self.domain.name,
            "fid_domain_checksum": self.domain.checksum[:16],
            "fid_domain_test_accuracy": float(self.domain.test_accuracy) if self.domain.test_accuracy is not None else float("nan"),
            "is_splits": self.is_splits,
            "kid_subsets": self.kid_subsets,
            "kid_subset_size": min(self.kid_subset_size, self.num_samples),
            "pr_k": self.pr_k,
            "ms_ssim_scales": scores.ms_ssim_scales(self.image_size),
            "one_nn_distance": "euclidean_leave_one_out_ties_averaged",
            "m_is_classes": "argmax_predicted",
            **references,
        }

    def _real_features(self, kind: str, checksum: str, real_uint8: np.ndarray, batch_fn, params) -> dict:
        """{'features', 'logits', 'mu', 'sigma'} of the real images, cached as npz."""
        key = _hash(kind, self.dataset, self.split, self.num_samples, self.image_size, self.data_range, checksum)
        path = self.cache_dir / "real_stats_v2" / f"{self.dataset}_{self.split}_{self.image_size}px_{self.num_samples}_{kind}_{key}.npz"
        names = ("features", "logits", "mu", "sigma", "sigma_sqrt")
        stored = cache.load_arrays(path, names, self._log)  # None when absent or damaged (then rebuilt)
        if stored is not None:
            return stored
        images = real_uint8.astype(np.float32) / 255.0
        features, logits = self._batched(lambda i, b: jnp.asarray(_take(images, i, b)), batch_fn, params)
        mu, sigma = frechet.feature_statistics(features)
        result = {"features": features, "logits": logits, "mu": mu, "sigma": sigma, "sigma_sqrt": frechet.psd_sqrt(sigma)}
        cache.save_arrays(path, result)
        return result

    def reference_images(self) -> dict[str, np.ndarray]:
        """The three reference sets, float32 [num_samples, H, W, C] in [0, 1]:
        floor (the first num_samples train images, or all when the train split is smaller),
        noise (uniform, seed NOISE_SEED), mean_image (the mean train image, repeated)."""

        train = np.asarray(data.load(self.dataset, "train", self.image_size)).astype(np.float32) / 255.0
        shape = (self.num_samples, self.image_size, self.image_size, self.channels)
        noise = np.random.default_rng(NOISE_SEED).uniform(0.0, 1.0, shape).astype(np.float32)
        mean_image = np.broadcast_to(train.mean(axis=0, dtype=np.float64).astype(np.float32), shape).copy()
        return {"floor": train[: self.num_samples], "noise": noise, "mean_image": mean_image}

    def _references(self, real_uint8: np.ndarray, log) -> dict[str, float]:
        """`<metric>_ref_<kind>` of the reference sets (see the module docstring), cached per
        protocol (extractors, split, sample count, size, metric settings) in a verified file."""
        key = _hash(REFERENCE_VERSION, self.dataset, self.split, self.num_samples, self.image_size, self.domain.checksum,
                    self.inception.sha256 + self.inception.resize_name if self.inception else "",
                    self.is_splits, self.kid_subsets, self.kid_subset_size, self.pr_k, NOISE_SEED)
        path = self.cache_dir / "references_v1" / f"{self.dataset}_{self.split}_{self.image_size}px_{self.num_samples}_{key}.npz"
        stored = cache.load_arrays(path, ("prior_domain",), log)
        if stored is None:
            stored = self._compute_references()
            cache.save_arrays(path, stored)
        prior = stored.pop("prior_domain")
        self._prior_domain = prior if prior.size else None
        return {name: float(value) for name, value in sorted(stored.items())}

    def _compute_references(self) -> dict[str, np.ndarray]:
        unit_domain = jax.jit(lambda params, x: _domain_apply(params, x))
        sets = self.reference_images()
        prior = np.zeros(0)
        if self.domain.has_classifier:
            # p*(y): the classifier's mean prediction on the floor's real train images.
            _, train_logits = self._batched_images(sets["floor"], unit_domain, self.domain.params)
            prior = np.exp(scores.log_softmax(train_logits)).mean(axis=0)
            self._prior_domain = prior
        values: dict[str, np.ndarray] = {"prior_domain": prior}
        for kind, images in sets.items():
            features, logits = self._batched_images(images, unit_domain, self.domain.params)
            metrics = self._scores(self._real_domain, features, logits, "_domain", self.domain.has_classifier)
            metrics.update(self._class_scores(logits))
            if self.inception is not None:
                features, logits = self._batched_images(images, jax.jit(self.inception.apply_params), self.inception.params)
                metrics.update(self._scores(self._real_inception, features, logits, "", True))
            for name in REFERENCE_METRICS:
                if name in metrics:
                    values[f"{name}_ref_{kind}"] = np.asarray(metrics[name], np.float64)
        return values

    def _batched_images(self, images: np.ndarray, batch_fn, params):
        """(features, logits) of an in-memory image set [n, H, W, C] in [0, 1], n <= num_samples."""
        n = len(images)
        features, logits = self._batched(lambda i, b: jnp.asarray(_take(images, min(i, (n - 1) // b), b)), batch_fn, params)
        return features[:n], logits[:n]

    def _class_scores(self, logits: np.ndarray) -> dict[str, float]:
        """Label-based scores of the domain classifier's logits (digits only; empty otherwise)."""
        if not self.domain.has_classifier or self._prior_domain is None:
            return {}
        return {"classes_covered_domain": float(scores.classes_covered(logits)),
                "mode_score_domain": scores.mode_score(logits, self._prior_domain),
                "am_score_domain": scores.am_score(logits, self._prior_domain)}

    def _batched(self, sample_fn, batch_fn, params, keep_images: int = 0):
        """Runs batch_fn over ceil(N / batch) batches of sample_fn; host float64 (features, logits)[:N] (+ images)."""
        outputs, kept = [], []
        for index in range(math.ceil(self.num_samples / self.batch_size)):
            images = sample_fn(index, self.batch_size)
            expected = (self.batch_size, self.image_size, self.image_size, self.channels)
            if tuple(images.shape) != expected:
                raise ValueError(f"sample_fn({index}, {self.batch_size}) returned shape {tuple(images.shape)}; expected {expected}")
            outputs.append(batch_fn(params, images))
            if keep_images and index * self.batch_size < keep_images:
                kept.append(images)
        features = np.concatenate([np.asarray(f) for f, _ in outputs])[: self.num_samples].astype(np.float64)
        logits = np.concatenate([np.asarray(l) for _, l in outputs])[: self.num_samples].astype(np.float64)
        if keep_images:
            return features, logits, kept
        return features, logits

    def _scores(self, real: dict, features: np.ndarray, logits: np.ndarray, suffix: str, with_is: bool) -> dict:
        mu, sigma = frechet.feature_statistics(features)
        out = {f"fid{suffix}": frechet.frechet_distance(real["mu"], real["sigma"], mu, sigma, real["sigma_sqrt"])}
        out[f"kid{suffix}"] = scores.kernel_inception_distance(
            real["features"], features, self.kid_subsets, self.kid_subset_size, seed=0)
        if with_is:
            out[f"is{suffix}"] = scores.inception_score(logits, self.is_splits)
            out[f"m_is{suffix}"] = scores.modified_inception_score(logits)
        out[f"precision{suffix}"], out[f"recall{suffix}"] = scores.precision_recall(real["features"], features, self.pr_k)
        nn = two_sample.one_nn_two_sample(real["features"], features)
        out[f"one_nn_accuracy{suffix}"] = nn["accuracy"]
        out[f"one_nn_real_accuracy{suffix}"] = nn["real_accuracy"]
        out[f"one_nn_fake_accuracy{suffix}"] = nn["fake_accuracy"]
        return out

    def _ms_ssim(self, kept: list) -> float:
        images = jnp.concatenate([_to_unit_range(x, self.data_range) for x in kept])[: self.num_samples]
        group = min(64, images.shape[0])
        batches = min(5, images.shape[0] // group)
        values = [scores.ms_ssim_diversity(images[i * group : (i + 1) * group]) for i in range(batches)]
        return float(np.mean([float(v) for v in values]))

    def requested_labels(self) -> np.ndarray:
        """int32 [num_samples]: the labels a conditional generator is asked for, the evaluation
        split's own labels in order (so the class mix is the real evaluation images')."""
        if self._real_labels is None:
            raise ValueError(f"dataset {self.dataset!r} has no class labels; conditional evaluation needs a "
                             "labelled dataset (study.data.info(name).num_classes > 0)")
        return self._real_labels.copy()

    def batch_labels(self, labels: np.ndarray, index: int) -> np.ndarray:
        """int32 [batch_size]: labels[index*B:(index+1)*B], the last batch padded by repeating its
        last label (the samples past num_samples are cut off), for a sampler that needs a full batch."""
        return np.asarray(_take(np.asarray(labels, np.int32), index, self.batch_size))

    def _check_sample_labels(self, sample_labels) -> np.ndarray:
        if self._real_labels is None:
            self.requested_labels()  # the one-line error
        labels = np.asarray(sample_labels)
        if labels.shape != (self.num_samples,) or not np.issubdtype(labels.dtype, np.integer) or \
                labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"sample_labels of shape {labels.shape}, dtype {labels.dtype} not allowed; need int "
                             f"[{self.num_samples}] in 0..{self.num_classes - 1} (see Evaluator.requested_labels)")
        return labels.astype(np.int32)

    def _conditional_scores(self, features: np.ndarray, logits: np.ndarray, images01: np.ndarray,
                            labels: np.ndarray) -> dict[str, float]:
        """GAN-test, GAN-train and per-class domain FID of samples images01 [n, H, W, C] in [0, 1]
        generated for labels [n], with their domain features [n, 128] and logits [n, classes]."""
        out = {}
        if self.domain.has_classifier:
            out["gan_test_domain"] = conditional.gan_test(logits, labels)
        out["gan_train_domain"] = conditional.gan_train(
            images01, labels, self._real_uint8.astype(np.float32) / 255.0, self._real_labels, self.num_classes)
        per_class = conditional.class_fid(self._real_domain["features"], self._real_labels, features, labels,
                                          self.num_classes)
        out["fid_domain_class_mean"] = per_class["mean"]
        out["fid_domain_class_max"] = per_class["max"]
        out["fid_domain_classes"] = per_class["classes"]
        return out

    def _ensure_conditional_protocol(self) -> None:
        """Adds the GAN-train recipe and the conditional reference points to `protocol`
        (computed once per protocol and cached on disk, like the other references)."""
        if self._conditional_protocol is None:
            key = _hash(REFERENCE_VERSION, "conditional", self.dataset, self.split, self.num_samples, self.image_size,
                        self.domain.checksum, conditional.GAN_TRAIN_PROTOCOL, NOISE_SEED)
            path = (self.cache_dir / "references_conditional_v1"
                    / f"{self.dataset}_{self.split}_{self.image_size}px_{self.num_samples}_{key}.npz")
            stored = cache.load_arrays(path, (), self._log)
            if stored is None:
                stored = self._compute_conditional_references()
                cache.save_arrays(path, stored)
            self._conditional_protocol = {"gan_train_classifier": conditional.GAN_TRAIN_PROTOCOL,
                                          **{name: float(value) for name, value in sorted(stored.items())}}
        self.protocol.update(self._conditional_protocol)

    def _compute_conditional_references(self) -> dict[str, np.ndarray]:

        unit_domain = jax.jit(lambda params, x: _domain_apply(params, x))
        sets = self.reference_images()
        train_labels = np.asarray(data.labels(self.dataset, "train"), np.int32)
        values = {}
        for kind, images in sets.items():
            labels = train_labels[: len(images)] if kind == "floor" else self.requested_labels()
            features, logits = self._batched_images(images, unit_domain, self.domain.params)
            metrics = self._conditional_scores(features, logits, images, labels)
            for name in CONDITIONAL_REFERENCE_METRICS:
                if name in metrics:
                    values[f"{name}_ref_{kind}"] = np.asarray(metrics[name], np.float64)
        return values

    def evaluate(self, sample_fn: Callable[[int, int], jnp.ndarray], sample_labels=None) -> dict[str, float]:
        """Metrics of the generator behind sample_fn(batch_index, batch_size) -> [batch_size, H, W, C] in data_range.

        sample_labels: None (unconditional), or int [num_samples], the classes the samples were
        generated for: batch i of sample_fn for sample_labels[i*B:(i+1)*B] (the last batch's
        rows past num_samples are ignored; `batch_labels` pads). Adds the conditional scores
        (module docstring) and, from the first such call on, their references to `protocol`.
        """
        labels = None if sample_labels is None else self._check_sample_labels(sample_labels)
        keep = 5 * 64 if labels is None else max(5 * 64, self.num_samples)
        features, logits, kept = self._batched(sample_fn, self._domain_batch, self.domain.params, keep_images=keep)
        metrics = self._scores(self._real_domain, features, logits, "_domain", self.domain.has_classifier)
        metrics.update(self._class_scores(logits))
        metrics["ms_ssim"] = self._ms_ssim(kept)
        if labels is not None:
            images01 = np.asarray(jnp.concatenate([_to_unit_range(x, self.data_range) for x in kept]))[: self.num_samples]
            metrics.update(self._conditional_scores(features, logits, images01, labels))
            self._ensure_conditional_protocol()
        if self.inception is not None:
            # Second pass over the same samples (sample_fn must be deterministic in batch_index).
            features, logits = self._batched(sample_fn, self._inception_batch, self.inception.params)
            metrics.update(self._scores(self._real_inception, features, logits, "", True))
        return {name: float(value) for name, value in metrics.items()}


def _domain_apply(params, images01):
    with jax.default_matmul_precision("highest"):
        return domain.DomainCNN().apply({"params": params}, images01)


def _take(images: np.ndarray, index: int, batch: int) -> np.ndarray:
    """Batch `index` of `images`, padded to `batch` rows by repeating the last (padding is cut off after)."""
    part = images[index * batch : (index + 1) * batch]
    if len(part) < batch:
        part = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
    return part
