"""The FID Inception network (TF "2015-12-05" graph as ported by pytorch-fid), in Flax linen, NHWC.

Structure of pytorch-fid's `FIDInceptionV3` (mseitzer/pytorch-fid, inception.py):
stem convs, Mixed_5b..5d = FIDInceptionA (3x3 average pool excluding padding),
Mixed_6a = InceptionB, Mixed_6b..6e = FIDInceptionC, Mixed_7a = InceptionD,
Mixed_7b = FIDInceptionE_1 (average pool excluding padding), Mixed_7c = FIDInceptionE_2
(3x3 max pool), global average -> pool3 [B, 2048]; fc (2048 -> 1008) gives the logits
used for the Inception Score (the TF graph's 1008-way "logits"; pytorch-fid's weights
file includes it). BasicConv2d = conv (no bias) + batch norm (eps 1e-3, inference) + ReLU.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, read with
`torch.load(weights_only=True)` (torch imported lazily, only to read the file).

Input: images [B, H, W, C] float in [0, 1], C in {1, 3} (grayscale repeated), resized to
299x299 bilinearly, then scaled:
  resize="tf":    TF1 resize_bilinear(align_corners=False) (src = i * in/out, no half-pixel
                  centres) and (255 x - 128) / 128 - the paper's TFGAN preprocessing (spec §7);
  resize="torch": PyTorch interpolate(bilinear, align_corners=False) (half-pixel centres)
                  and 2 x - 1 - exactly pytorch-fid.
Default "tf": compare_gan's FIDs were computed that way (spec §7); "torch" reproduces pytorch-fid.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WHERE_TO_PUT_WEIGHTS = (
    f"Put {WEIGHTS_FILE} in $GAN_STUDY_CACHE or ~/.cache/gan_study/, or set FID_INCEPTION_WEIGHTS=/path/to/it "
    "(on a machine with internet: python -m study.metrics.fetch_inception)."
)
RESIZE_MODES = {
    "tf": ("tf1_resize_bilinear_align_corners_false", "(255x-128)/128"),
    "torch": ("torch_bilinear_half_pixel", "2x-1"),
}
INPUT_SIZE = 299
BN_EPS = 1e-3


def bilinear_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
    """[out_size, in_size] float32 interpolation weights of 1-D bilinear resizing (mode "tf" or "torch")."""
    scale = in_size / out_size
    out_index = np.arange(out_size, dtype=np.float64)
    if mode == "tf":
        source = out_index * scale
    elif mode == "torch":
        source = np.maximum((out_index + 0.5) * scale - 0.5, 0.0)
    else:
        raise ValueError(f"resize={mode!r} not allowed; choose one of {sorted(RESIZE_MODES)}")
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = source - low
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (np.arange(out_size), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(out_size), high), frac)
    return matrix.astype(np.float32)


def resize_bilinear(images: jnp.ndarray, size: int, mode: str) -> jnp.ndarray:
    """[B, H, W, C] -> [B, size, size, C], separable bilinear (float32, highest precision)."""
    rows = jnp.asarray(bilinear_matrix(images.shape[1], size, mode))
    cols = jnp.asarray(bilinear_matrix(images.shape[2], size, mode))
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", rows, images, precision=hp)
    return jnp.einsum("pw,bowc->bopc", cols, x, precision=hp)


class BatchNormInference(nn.Module):
    """Inference batch norm with torch's parameter names (weight, bias, running_mean, running_var)."""

    features: int

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mean = self.param("running_mean", nn.initializers.zeros, (self.features,))
        var = self.param("running_var", nn.initializers.ones, (self.features,))
        return (x - mean) * (weight / jnp.sqrt(var + BN_EPS)) + bias


class BasicConv2d(nn.Module):
    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        pad = ((self.padding[0], self.padding[0]), (self.padding[1], self.padding[1]))
        x = nn.Conv(self.features, self.kernel, strides=self.stride, padding=pad, use_bias=False,
                    precision=jax.lax.Precision.HIGHEST, name="conv")(x)
        return nn.relu(BatchNormInference(self.features, name="bn")(x))


def _avg_pool_3x3(x):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class FIDInceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionE(nn.Module):
    """E_1 (average pool excluding padding) when max_pool is False, E_2 (3x3 max pool) when True."""

    max_pool: bool

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1))) if self.max_pool else _avg_pool_3x3(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """(images [B, 299, 299, 3] scaled to about [-1, 1]) -> (pool3 [B, 2048], logits [B, 1008])."""

    @nn.compact
    def __call__(self, x):
        x = BasicConv2d(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = FIDInceptionA(32, name="Mixed_5b")(x)
        x = FIDInceptionA(64, name="Mixed_5c")(x)
        x = FIDInceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = FIDInceptionC(128, name="Mixed_6b")(x)
        x = FIDInceptionC(160, name="Mixed_6c")(x)
        x = FIDInceptionC(160, name="Mixed_6d")(x)
        x = FIDInceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = FIDInceptionE(False, name="Mixed_7b")(x)
        x = FIDInceptionE(True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(1008, precision=jax.lax.Precision.HIGHEST, name="fc")(pool3)
        return pool3, logits


def preprocess(images01: jnp.ndarray, resize: str) -> jnp.ndarray:
    """[B, H, W, 1|3] in [0, 1] -> [B, 299, 299, 3] as the network expects (see module docstring)."""
    if images01.shape[-1] == 1:
        images01 = jnp.repeat(images01, 3, axis=-1)
    x = resize_bilinear(images01.astype(jnp.float32), INPUT_SIZE, resize)
    return (x * 255.0 - 128.0) / 128.0 if resize == "tf" else x * 2.0 - 1.0


@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """{'Mixed_5b/branch1x1/conv/kernel': shape, ...} of FIDInceptionV3's params (traced once per process)."""
    expected = jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3))))["params"]
    return {"/".join(k.key for k in path): leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}


def params_from_state_dict(state_dict) -> dict:
    """Flax params of FIDInceptionV3 from a pytorch-fid state dict {name: array}; every key must be used.

    Raises ValueError (one line) naming missing / unexpected keys or wrong shapes.
    """
    expected_flat = _expected_shapes()
    converted: dict[str, np.ndarray] = {}
    unexpected = []
    for key, value in state_dict.items():
        value = np.asarray(value)
        if key.endswith("num_batches_tracked"):
            continue  # a training counter, unused at inference
        parts = key.split(".")
        if parts[-1] == "weight" and value.ndim == 4:  # conv [out, in, kh, kw] -> [kh, kw, in, out]
            parts[-1], value = "kernel", value.transpose(2, 3, 1, 0)
        elif parts[0] == "fc" and parts[-1] == "weight":  # linear [out, in] -> [in, out]
            parts[-1], value = "kernel", value.T
        name = "/".join(parts)
        if name not in expected_flat:
            unexpected.append(key)
        converted[name] = value.astype(np.float32)
    missing = sorted(set(expected_flat) - set(converted))
    wrong = [f"{k} {converted[k].shape}!={expected_flat[k]}" for k in expected_flat if k in converted and converted[k].shape != expected_flat[k]]
    if missing or unexpected or wrong:
        raise ValueError(
            f"not a pytorch-fid FID Inception state dict ({WEIGHTS_FILE}): {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(wrong)} wrong shapes {wrong[:3]}")
    params: dict = {}
    for name, value in converted.items():
        node = params
        *parents, leaf = name.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = jnp.asarray(value)
    return params


def load_state_dict(path: str | os.PathLike) -> dict:
    """{name: float32 numpy} from a torch-saved state dict (torch.load(weights_only=True), CPU)."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - torch is installed in this project
        raise RuntimeError(f"reading {path} needs torch (pip install torch): {error}") from None
    try:
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable torch state dict ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return {key: value.detach().cpu().numpy() for key, value in loaded.items()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_weights(explicit: str | os.PathLike | None, cache_dir: str | os.PathLike | None) -> pathlib.Path | None:
    """Path of the weights: explicit argument, else $FID_INCEPTION_WEIGHTS, else CACHE/WEIGHTS_FILE; None if absent.

    An explicit path or env value that does not exist is an error (a typo should not silently
    fall back to domain metrics).
    """
    for source, value in (("inception_weights", explicit), ("FID_INCEPTION_WEIGHTS", os.environ.get("FID_INCEPTION_WEIGHTS"))):
        if value:
            path = pathlib.Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{source}={value!r} does not exist. {WHERE_TO_PUT_WEIGHTS}")
            return path
    if cache_dir is None:
        cache_dir = os.environ.get("GAN_STUDY_CACHE") or pathlib.Path.home() / ".cache" / "gan_study"
    candidate = pathlib.Path(cache_dir) / WEIGHTS_FILE
    return candidate if candidate.is_file() else None


class FIDInception:
    """The network with its weights. apply_params(params, images01 [B, H, W, C] in [0, 1]) -> (pool3, logits)."""

    def __init__(self, params: dict, resize: str = "tf", sha256: str = ""):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize={resize!r} not allowed; choose one of {sorted(RESIZE_MODES)}")
        self.params, self.resize, self.sha256 = params, resize, sha256
        self.resize_name, self.scaling_name = RESIZE_MODES[resize]

    @classmethod
    def from_file(cls, path: str | os.PathLike, resize: str = "tf") -> "FIDInception":
        return cls(params_from_state_dict(load_state_dict(path)), resize, file_sha256(path))

    def apply_params(self, params, images01):
        """(params, images01 [B, H, W, C] in [0, 1]) -> (pool3 [B, 2048], logits [B, 1008]); traceable."""
        return apply_inception(params, images01, self.resize)

    def features_fn(self):
        """jit-compiled (images01 [B, H, W, C]) -> (pool3 [B, 2048], logits [B, 1008]); one compile per shape per process."""
        return lambda images01: inception_features(self.params, images01, self.resize)


def apply_inception(params, images01, resize: str):
    with jax.default_matmul_precision("highest"):
        return FIDInceptionV3().apply({"params": params}, preprocess(images01, resize))


# Module-level jit: every FIDInception instance (CLI, Evaluator, tests) shares the compiled code.
inception_features = jax.jit(apply_inception, static_argnames="resize")
