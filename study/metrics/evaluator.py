"""Evaluator: FID/IS/KID/precision/recall/MS-SSIM of a generator against one data split.

Real-side features are computed once and cached on disk (npz) keyed by dataset, split,
sample count, image size, data range and extractor checksum. Fake-side features come
from jit-compiled fixed-shape batches on the device; all statistics are float64 numpy
with fixed seeds, so the same samples give bit-identical metrics on CPU.

Metric names: `fid`, `kid`, `is`, `precision`, `recall` (standard FID Inception pool3 /
logits; only when the weights are present), `fid_domain`, `kid_domain`, `is_domain`,
`precision_domain`, `recall_domain` (domain feature space, see study.metrics.domain; NOT
comparable with published FIDs), `ms_ssim` (mean over ordered pairs of distinct
generated images, batches of 64, up to 5 batches; spec §7).
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

from study.metrics import domain, frechet, scores

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
        from study import data

        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        info = data.info(dataset)
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
        self.is_splits, self.kid_subsets, self.kid_subset_size, self.pr_k = is_splits, kid_subsets, kid_subset_size, pr_k
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dataset, self.split = dataset, split

        real_uint8 = np.asarray(data.load(dataset, split, self.image_size))[: self.num_samples]
        self.domain = domain.domain_extractor(dataset, self.image_size, self.channels, self.cache_dir, log)
        extractor_apply = self.domain.apply
        self._domain_batch = jax.jit(lambda params, x: _domain_apply(params, _to_unit_range(x, self.data_range)))
        self._real_domain = self._real_features(
            "domain", self.domain.checksum, real_uint8,
            jax.jit(lambda params, x: _domain_apply(params, x)), self.domain.params)
        del extractor_apply

        self.inception = None
        from study.metrics import inception as inception_lib

        weights_path = inception_lib.find_weights(inception_weights, self.cache_dir)
        if weights_path is None:
            warn_once("no-inception", (
                "FID Inception weights not found; reporting domain metrics only (fid_domain, kid_domain, "
                f"is_domain: NOT comparable with published FIDs). {inception_lib.WHERE_TO_PUT_WEIGHTS}"))
        else:
            self.inception = inception_lib.FIDInception.from_file(weights_path, resize=resize)
            self._inception_batch = jax.jit(
                lambda params, x: self.inception.apply_params(params, _to_unit_range(x, self.data_range)))
            self._real_inception = self._real_features(
                "inception", self.inception.sha256 + resize, real_uint8,
                jax.jit(self.inception.apply_params), self.inception.params)

        self.protocol = {
            "fid_features": "inception_2015_12_05_pool3_2048" if self.inception else "none",
            "fid_weights_sha256": self.inception.sha256 if self.inception else "",
            "fid_resize": self.inception.resize_name if self.inception else "",
            "fid_input_scaling": self.inception.scaling_name if self.inception else "",
            "fid_precision": "float32_highest_stats_float64",
            "fid_real_samples": self.num_samples,
            "fid_fake_samples": self.num_samples,
            # No "fid_split": the split is the trial config's fid_split column, and protocol keys
            # are merged into rows beside the config (a duplicate key fails the row, study.store).
            "fid_domain_features": self.domain.name,
            "fid_domain_checksum": self.domain.checksum[:16],
            "fid_domain_test_accuracy": float(self.domain.test_accuracy) if self.domain.test_accuracy is not None else float("nan"),
            "is_splits": is_splits,
            "kid_subsets": kid_subsets,
            "kid_subset_size": min(kid_subset_size, self.num_samples),
            "pr_k": pr_k,
            "ms_ssim_scales": scores.ms_ssim_scales(self.image_size),
        }

    def _real_features(self, kind: str, checksum: str, real_uint8: np.ndarray, batch_fn, params) -> dict:
        """{'features', 'logits', 'mu', 'sigma'} of the real images, cached as npz."""
        key = _hash(kind, self.dataset, self.split, self.num_samples, self.image_size, self.data_range, checksum)
        path = self.cache_dir / "real_stats_v1" / f"{self.dataset}_{self.split}_{self.image_size}px_{self.num_samples}_{kind}_{key}.npz"
        if path.exists():
            with np.load(path) as stored:
                return {name: stored[name] for name in stored.files}
        images = real_uint8.astype(np.float32) / 255.0
        features, logits = self._batched(lambda i, b: jnp.asarray(_take(images, i, b)), batch_fn, params)
        mu, sigma = frechet.feature_statistics(features)
        result = {"features": features, "logits": logits, "mu": mu, "sigma": sigma, "sigma_sqrt": frechet.psd_sqrt(sigma)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, **result)
        os.replace(tmp, path)
        return result

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
        out[f"precision{suffix}"], out[f"recall{suffix}"] = scores.precision_recall(real["features"], features, self.pr_k)
        return out

    def _ms_ssim(self, kept: list) -> float:
        images = jnp.concatenate([_to_unit_range(x, self.data_range) for x in kept])[: self.num_samples]
        group = min(64, images.shape[0])
        batches = min(5, images.shape[0] // group)
        values = [scores.ms_ssim_diversity(images[i * group : (i + 1) * group]) for i in range(batches)]
        return float(np.mean([float(v) for v in values]))

    def evaluate(self, sample_fn: Callable[[int, int], jnp.ndarray]) -> dict[str, float]:
        """Metrics of the generator behind sample_fn(batch_index, batch_size) -> [batch_size, H, W, C] in data_range."""
        features, logits, kept = self._batched(sample_fn, self._domain_batch, self.domain.params, keep_images=5 * 64)
        metrics = self._scores(self._real_domain, features, logits, "_domain", self.domain.has_classifier)
        metrics["ms_ssim"] = self._ms_ssim(kept)
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
