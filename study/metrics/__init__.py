"""Evaluation: FID (standard FID Inception, Flax port), IS, KID, precision/recall, MS-SSIM, domain metrics.

`Evaluator` is what the training loop uses; see study/metrics/evaluator.py for the
metric names and protocol columns.
"""
from study.metrics.evaluator import Evaluator, default_cache_dir

__all__ = ["Evaluator", "default_cache_dir"]
