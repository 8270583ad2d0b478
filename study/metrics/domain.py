"""Domain feature extractors: FID/KID/IS/PR without the Inception weights.

Numbers computed here are named `fid_domain`, `kid_domain`, `is_domain`,
`precision_domain`, `recall_domain` and are NOT comparable with published FIDs.

- `digits`: a small CNN classifier trained on the digits train split at the requested
  image size (deterministic: fixed seed, fixed-order minibatches, Adam via optax),
  cached on disk keyed by dataset, image size and CODE_VERSION. Features = its 128-d
  penultimate layer (after ReLU); its 10 logits give `is_domain`.
- every other dataset: `random_conv`, the same network with fixed-seed random weights
  (no training, no labels): a fixed, honest feature space for FID/KID/PR; no IS.

Input: float images [B, H, W, C] in [0, 1] (callers rescale from their data range).
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import time

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from study import data
from study.metrics import cache

CODE_VERSION = "domain-cnn-v1"
FEATURE_DIM = 128
NUM_CLASSES = 10
TRAIN_SEED = 0
TRAIN_EPOCHS = 4
TRAIN_BATCH = 64
LEARNING_RATE = 2e-3


class DomainCNN(nn.Module):
    """conv3x3(32) -> conv3x3/2(64) -> conv3x3/2(64) [-> conv3x3/2(64) while side > 8] -> dense(128) -> dense(classes).

    __call__(x [B, H, W, C] in [0, 1]) -> (features [B, 128], logits [B, classes]).
    """

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, images):
        x = images * 2.0 - 1.0
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
        while x.shape[1] > 8:
            x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
        features = nn.relu(nn.Dense(FEATURE_DIM)(x.reshape(x.shape[0], -1)))
        return features, nn.Dense(self.num_classes)(features)


@dataclasses.dataclass(frozen=True)
class DomainExtractor:
    """A fixed feature network. `name` goes into the protocol; `checksum` keys caches."""

    name: str
    params: dict
    image_size: int
    channels: int
    has_classifier: bool
    checksum: str
    test_accuracy: float | None = None

    def apply(self, images01: jnp.ndarray):
        """images [B, H, W, C] float in [0, 1] -> (features [B, 128], logits [B, 10]); jit-friendly."""
        with jax.default_matmul_precision("highest"):
            return DomainCNN().apply({"params": self.params}, images01)


def _checksum(params) -> str:
    """sha256 over (path, float32 bytes) of every leaf in path order: independent of container types."""
    digest = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda item: jax.tree_util.keystr(item[0])):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()


def digits_labels(split: str) -> np.ndarray:
    """Class labels [N] of study.data's digits split, in its image order."""

    return np.asarray(data.labels("digits", split))


def _train_digits(image_size: int, log) -> tuple[dict, float, float]:
    """Trains the digits classifier; returns (params, test accuracy, seconds)."""

    started = time.perf_counter()
    train_x = np.asarray(data.load("digits", "train", image_size), np.float32) / 255.0
    train_y = digits_labels("train")
    test_x = np.asarray(data.load("digits", "test", image_size), np.float32) / 255.0
    test_y = digits_labels("test")
    model = DomainCNN()
    params = model.init(jax.random.PRNGKey(TRAIN_SEED), train_x[:1])["params"]
    optimizer = optax.adam(LEARNING_RATE)
    rng = np.random.default_rng(TRAIN_SEED)
    steps_per_epoch = len(train_x) // TRAIN_BATCH
    # Fixed-order minibatches: one seeded permutation per epoch, all drawn up front.
    order = np.stack([rng.permutation(len(train_x))[: steps_per_epoch * TRAIN_BATCH] for _ in range(TRAIN_EPOCHS)])
    order = order.reshape(TRAIN_EPOCHS * steps_per_epoch, TRAIN_BATCH)

    @jax.jit
    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            _, logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    with jax.default_matmul_precision("highest"):
        opt_state = optimizer.init(params)
        for indices in order:
            params, opt_state = train_step(params, opt_state, train_x[indices], train_y[indices])
        _, logits = jax.jit(model.apply)({"params": params}, jnp.asarray(test_x))
    accuracy = float(np.mean(np.argmax(np.asarray(logits), axis=1) == test_y))
    seconds = time.perf_counter() - started
    log(f"domain classifier digits/{image_size}px: test accuracy {accuracy:.4f}, trained in {seconds:.1f} s")
    return jax.device_get(params), accuracy, seconds


def _restore(payload: bytes | None, template, path: pathlib.Path, log):
    """(params, test accuracy) from a verified payload; None when absent or not a state of
    `template`'s shapes (then the classifier is retrained and the file rewritten)."""
    if payload is None:
        return None
    try:
        restored = flax.serialization.msgpack_restore(payload)
        params = flax.serialization.from_state_dict(template, restored["params"])
        shapes_match = jax.tree_util.tree_all(jax.tree_util.tree_map(
            lambda a, b: np.shape(a) == np.shape(b), params, template))
        if not shapes_match:
            raise ValueError("parameter shapes differ")
        return params, float(restored["test_accuracy"])
    except Exception as error:  # verified bytes of another layout: retrain
        log(f"WARNING: cache file {path} is damaged: {type(error).__name__}: {error}; rebuilding it")
        return None


def domain_extractor(dataset: str, image_size: int, channels: int, cache_dir: pathlib.Path, log=print) -> DomainExtractor:
    """The domain extractor of `dataset` at `image_size` (trained once and cached for digits)."""
    template = DomainCNN().init(jax.random.PRNGKey(TRAIN_SEED), jnp.zeros((1, image_size, image_size, channels)))["params"]
    if dataset != "digits":
        params = jax.device_get(template)
        return DomainExtractor("random_conv_v1_seed0", params, image_size, channels, False, _checksum(params))
    # A verified file (study.metrics.cache): a truncated or garbled one is retrained, not trusted.
    path = pathlib.Path(cache_dir) / "domain" / f"digits_{image_size}px_{CODE_VERSION}.verified.msgpack"
    restored = _restore(cache.read_verified(path, log), template, path, log)
    if restored is not None:
        params, accuracy = restored
    else:
        params, accuracy, _ = _train_digits(image_size, log)
        cache.write_verified(path, flax.serialization.msgpack_serialize(
            {"params": flax.serialization.to_state_dict(params), "test_accuracy": accuracy}))
    return DomainExtractor(f"digits_cnn_{CODE_VERSION}", params, image_size, channels, True, _checksum(params), accuracy)
