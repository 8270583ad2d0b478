"""Image decoding and geometry shared by the loaders (PIL, uint8 HWC)."""
from __future__ import annotations

import io

import numpy as np

from study.data.errors import DataError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_format(encoded: bytes) -> str | None:
    """'webp', 'jpeg' or 'png' from the leading magic bytes; None when unknown."""
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return "webp"
    if encoded[:3] == JPEG_MAGIC:
        return "jpeg"
    if encoded[:8] == PNG_MAGIC:
        return "png"
    return None


def decode_rgb(encoded: bytes, where: str) -> np.ndarray:
    """Decode one WebP/JPEG/PNG image to uint8 [H, W, 3]; `where` names it in errors."""
    from PIL import Image

    kind = sniff_format(encoded)
    if kind is None:
        raise DataError(f"{where}: not a WebP, JPEG or PNG image (first bytes {encoded[:12]!r})")
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{where}: corrupt {kind} image ({error})") from None


def center_crop_or_pad(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> [size, size, C], as TF1 `tf.image.resize_image_with_crop_or_pad`.

    Larger sides are cropped around the centre (offset (H - size) // 2), smaller sides
    are zero-padded around the centre (offset (size - H) // 2); no resampling. This is
    the paper's LSUN-Bedroom preprocessing (compare_gan v2 datasets.py, spec §8).
    """
    height, width = image.shape[:2]
    crop_top, crop_left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    cropped = image[crop_top : crop_top + size, crop_left : crop_left + size]
    if cropped.shape[:2] == (size, size):
        return cropped
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    pad_top, pad_left = max((size - height) // 2, 0), max((size - width) // 2, 0)
    out[pad_top : pad_top + cropped.shape[0], pad_left : pad_left + cropped.shape[1]] = cropped
    return out


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> [N, size, size, C] with PIL bilinear resampling.

    PIL's BILINEAR widens its kernel to the source footprint when downscaling (an
    antialiased triangle filter), so 128 -> 32 averages rather than aliases.
    """
    from PIL import Image

    channels = images.shape[-1]
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if channels == 1 else image)
        resized = np.asarray(pil.resize((size, size), Image.BILINEAR))
        out[i] = resized[..., None] if channels == 1 else resized
    return out
