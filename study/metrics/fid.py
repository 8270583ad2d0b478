"""FID between two image sets, like pytorch-fid's CLI.

    python -m study.metrics.fid PATH_A PATH_B [--weights W] [--features-out F.npy] [--resize tf|torch] [--batch-size N]

Each PATH: an image folder (png/jpg/...) or a .npy/.npz uint8 array [N, H, W, C] (C 1 or 3;
grayscale repeated to 3 channels). Prints the FID (standard FID Inception pool3 features).
--features-out saves PATH_A's pool3 features [N, 2048] float32.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
from PIL import Image

from study.metrics import frechet, inception

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def load_images(path: str) -> np.ndarray:
    """uint8 [N, H, W, C] from a folder of images or a .npy/.npz array."""
    p = pathlib.Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        arrays = []
        for file in files:
            try:
                with Image.open(file) as image:
                    arrays.append(np.asarray(image.convert("RGB")))
            except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
                raise ValueError(f"{file} is not a readable image ({type(error).__name__})") from None
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(f"{path}: images of different sizes {sorted({a.shape[:2] for a in arrays})}; "
                             f"all must share one size")
        images = np.stack(arrays)
    elif p.suffix in (".npy", ".npz"):
        try:
            if p.suffix == ".npy":
                images = np.load(p)
            else:
                with np.load(p) as archive:
                    if not archive.files:
                        raise ValueError(f"{path} holds no arrays; need one uint8 [N, H, W, 1|3]")
                    images = archive[archive.files[0]]
        except (OSError, EOFError) as error:
            raise ValueError(f"{path} is not a readable {p.suffix} file ({error})") from None
    else:
        raise ValueError(f"{path} is not an image folder, .npy or .npz")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: array {images.dtype} {images.shape} not allowed; need uint8 [N, H, W, 1|3]")
    if len(images) < 2:  # a covariance needs two samples; checked before any network work
        raise ValueError(f"{path} holds {len(images)} image(s); FID needs at least 2 per set")
    return images


def _check_features_out(path: str) -> None:
    """--features-out must be writable before minutes of feature extraction, not after."""
    target = pathlib.Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"--features-out {path} is a folder; give a .npy file path")
    parent = target.parent
    if not parent.is_dir():
        raise ValueError(f"--features-out {path}: {parent} is not an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"--features-out {path} is not writable")


def pool3_features(images: np.ndarray, network, batch_size: int) -> np.ndarray:
    """[N, 2048] float32 pool3 features of uint8 images, in fixed-shape batches (last one padded)."""
    apply = network.features_fn()
    out = []
    for start in range(0, len(images), batch_size):
        part = images[start : start + batch_size]
        pad = batch_size - len(part)
        if pad:
            part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
        features, _ = apply(jnp.asarray(part, jnp.float32) / 255.0)
        out.append(np.asarray(features)[: batch_size - pad])
    return np.concatenate(out).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="FID between two image sets (standard FID Inception, Flax).")
    parser.add_argument("path_a")
    parser.add_argument("path_b")
    parser.add_argument("--weights", default=None, help="pt_inception-2015-12-05-6726825d.pth (else $FID_INCEPTION_WEIGHTS or the cache dir)")
    parser.add_argument("--features-out", default=None, help="save PATH_A's pool3 features [N, 2048] float32 (.npy)")
    parser.add_argument("--resize", default="tf", choices=["tf", "torch"], help="tf: TF1 resize (paper); torch: pytorch-fid")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size={args.batch_size} not allowed; need >= 1")
        if args.features_out:
            _check_features_out(args.features_out)
        images_a, images_b = load_images(args.path_a), load_images(args.path_b)
        weights = inception.find_weights(args.weights, None)
        if weights is None:
            raise FileNotFoundError(f"FID Inception weights not found. {inception.WHERE_TO_PUT_WEIGHTS}")
        try:
            network = inception.FIDInception.from_file(weights, resize=args.resize)
        except (AttributeError, KeyError, TypeError) as error:  # a dict, but not of tensors / not Inception's
            raise ValueError(f"{weights} is not the FID Inception state dict ({type(error).__name__}: "
                             f"{str(error)[:200]})") from None
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    features_a = pool3_features(images_a, network, args.batch_size)
    features_b = pool3_features(images_b, network, args.batch_size)
    if args.features_out:
        np.save(args.features_out, features_a)
    print(f"FID: {frechet.frechet_distance_of_features(features_a, features_b):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
