"""FID feature extraction and the Fréchet distance: ours vs pytorch-fid's structure, side by side.

    python -m benchmarks.fid_features [--quick] [--batch 50] [--repeats N]

Features: our Flax FID Inception (study.metrics.inception, random weights with the
standard parameter shapes, resize="torch" = pytorch-fid's preprocessing) vs
benchmarks.torch_reference.FIDInception (pytorch-fid's FIDInceptionV3 structure, random
weights, eval mode, no_grad), both on the same 32x32 images in [0, 1] resized to 299;
images/s at batch 50, repetitions alternating. Fréchet distance at d = 2048: ours
(study.metrics.frechet, two symmetric eigendecompositions, float64) vs pytorch-fid's
formula (scipy.linalg.sqrtm of S_a S_b). ratio = our feature time / reference feature time.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import alternating_medians, median_seconds, parser, pin_threads, result_line


def scipy_frechet(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """pytorch-fid's calculate_frechet_distance formula: sqrtm of the product, real part."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma_a.dot(sigma_b))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma_a.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma_a + offset).dot(sigma_b + offset))
    covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff.dot(diff) + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))


def feature_times(batch: int, image_size: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    from benchmarks.torch_reference import FIDInception as TorchInception
    from study.metrics import inception

    images = np.random.default_rng(0).random((batch, image_size, image_size, 3), dtype=np.float32)
    network = inception.FIDInceptionV3()
    params = network.init(jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3)))["params"]
    ours = inception.FIDInception(params, resize="torch")
    compiled = jax.jit(ours.apply_params)
    images_jax = jax.device_put(images)
    start = time.perf_counter()
    compiled = compiled.lower(params, images_jax).compile()
    compile_s = time.perf_counter() - start

    torch.manual_seed(0)
    reference = TorchInception()
    images_torch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def run_ours():
        jax.block_until_ready(compiled(params, images_jax))

    def run_torch():
        with torch.no_grad():
            reference(images_torch)

    ours_s, torch_s = alternating_medians(run_ours, run_torch, repeats)
    return {"ours_img_s": batch / ours_s, "torch_img_s": batch / torch_s, "ours_ms": 1000 * ours_s,
            "torch_ms": 1000 * torch_s, "compile_s": compile_s}


def frechet_times(dim: int, samples: int, repeats: int) -> dict:
    from study.metrics import frechet

    rng = np.random.default_rng(1)
    # Low-rank-plus-noise features, like real Inception statistics (many small eigenvalues).
    basis = rng.standard_normal((dim // 4, dim))
    a = rng.standard_normal((samples, dim // 4)) @ basis + 0.1 * rng.standard_normal((samples, dim))
    b = rng.standard_normal((samples, dim // 4)) @ basis * 1.1 + 0.1 * rng.standard_normal((samples, dim))
    mu_a, sigma_a = frechet.feature_statistics(a)
    mu_b, sigma_b = frechet.feature_statistics(b)
    ours_value = frechet.frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    scipy_value = scipy_frechet(mu_a, sigma_a, mu_b, sigma_b)
    ours_s = median_seconds(lambda: frechet.frechet_distance(mu_a, sigma_a, mu_b, sigma_b), repeats, warmup=0)
    scipy_s = median_seconds(lambda: scipy_frechet(mu_a, sigma_a, mu_b, sigma_b), repeats, warmup=0)
    return {"frechet_ours_ms": 1000 * ours_s, "frechet_scipy_ms": 1000 * scipy_s,
            "frechet_ratio": ours_s / scipy_s, "frechet_rel_diff": abs(ours_value - scipy_value) / abs(scipy_value)}


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    pin_threads(2)
    if args.quick:
        batch, repeats, dim, samples = args.batch or 2, args.repeats or 1, 64, 256
    else:
        batch, repeats, dim, samples = args.batch or 50, args.repeats or 5, 2048, 4096
    features = feature_times(batch, 32, repeats)
    print(f"features: batch {batch} ours {features['ours_img_s']:.1f} img/s torch {features['torch_img_s']:.1f} img/s "
          f"(compile {features['compile_s']:.1f} s)", flush=True)
    distance = frechet_times(dim, samples, max(repeats, 2))
    print(f"frechet d={dim}: ours {distance['frechet_ours_ms']:.0f} ms scipy.sqrtm {distance['frechet_scipy_ms']:.0f} ms "
          f"relative difference {distance['frechet_rel_diff']:.1e}", flush=True)
    ratio = features["ours_ms"] / features["torch_ms"]
    print(result_line("fid_features", ratio, batch=batch, dim=dim, **features, **distance))


if __name__ == "__main__":
    main()
