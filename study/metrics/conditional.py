"""Scores of class-conditional generators: GAN-test, GAN-train (Shmelkov et al. 2018), per-class FID.

Each takes samples generated *for* given labels (the labels a conditional generator was
asked for, not what a classifier sees in them):

- `gan_test`: accuracy of a classifier trained on real data on the generated samples,
  against the requested labels (Shmelkov, Schmid & Alahari 2018, "How good is my GAN?",
  their GAN-test ~ precision: are the samples recognisably of their class?).
- `gan_train`: accuracy on real held-out data of a classifier trained on the generated
  labelled samples only (same paper: GAN-train ~ recall and diversity: do the
  samples carry enough of each class to learn it?). The classifier is the domain CNN
  (study.metrics.domain.DomainCNN), trained deterministically; see `gan_train`.
- `class_fid`: Fréchet distance (Heusel et al. 2017) per class between the generated
  samples requested for class c and the real samples of class c.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from study.metrics import domain, frechet

# GAN-train classifier: the domain CNN with the domain classifier's optimiser and
# batch, GAN_TRAIN_EPOCHS epochs (as the domain classifier) but at least GAN_TRAIN_MIN_STEPS steps,
# so a small sample set is still learnt: at the tiny protocol (300 samples) 100 steps = 21 epochs,
# ~1-2 s on a loaded 2-core CPU after one jit compilation per image shape and process. Measured on
# digits 8x8, 300 real train images -> test split: 0.967 at 100, 200, 300 and 500 steps alike
# (the same 300 with shuffled labels: 0.15-0.17), so more steps buy nothing there.
GAN_TRAIN_SEED = 0
GAN_TRAIN_EPOCHS = domain.TRAIN_EPOCHS
GAN_TRAIN_MIN_STEPS = 100
GAN_TRAIN_BATCH = domain.TRAIN_BATCH
GAN_TRAIN_LEARNING_RATE = domain.LEARNING_RATE
GAN_TRAIN_PROTOCOL = (f"domain_cnn_{domain.CODE_VERSION}_adam{GAN_TRAIN_LEARNING_RATE:g}_epochs{GAN_TRAIN_EPOCHS}"
                      f"_minsteps{GAN_TRAIN_MIN_STEPS}_batch{GAN_TRAIN_BATCH}_seed{GAN_TRAIN_SEED}")


def _check_labels(labels, count: int, num_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer) or (
            count and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"{what} of shape {labels.shape}, dtype {labels.dtype} not allowed; "
                         f"need int [{count}] in 0..{num_classes - 1}")
    return labels.astype(np.int32)


def gan_test(logits: np.ndarray, requested_labels) -> float:
    """GAN-test: fraction of generated samples whose arg-max class under a real-trained
    classifier is the class they were generated for (Shmelkov et al. 2018, the GAN-train / GAN-test section).

    logits [n, classes] of the generated samples; requested_labels int [n]. Chance level is
    about 1 / classes; the classifier's own test accuracy is what real images would score.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits shape {logits.shape} not allowed; need [n >= 1, classes]")
    labels = _check_labels(requested_labels, logits.shape[0], logits.shape[1], "requested_labels")
    return float(np.mean(logits.argmax(axis=1) == labels))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _init(images, num_classes: int):
    params = domain.DomainCNN(num_classes=num_classes).init(jax.random.PRNGKey(GAN_TRAIN_SEED), images[:1])["params"]
    return params, optax.adam(GAN_TRAIN_LEARNING_RATE).init(params)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _step(params, opt_state, images, labels, num_classes: int):
    """One Adam step on the softmax cross-entropy of a minibatch images [batch, H, W, C], labels [batch]."""
    model = domain.DomainCNN(num_classes=num_classes)

    def loss_fn(p):
        _, logits = model.apply({"params": p}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    updates, opt_state = optax.adam(GAN_TRAIN_LEARNING_RATE).update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def gan_train_steps(count: int) -> int:
    """Adam steps of GAN-train on `count` samples: GAN_TRAIN_EPOCHS epochs, at least GAN_TRAIN_MIN_STEPS."""
    return max(GAN_TRAIN_MIN_STEPS, -(-GAN_TRAIN_EPOCHS * count // GAN_TRAIN_BATCH))


def _train(images: np.ndarray, labels: np.ndarray, order: np.ndarray, num_classes: int):
    """Params after one `_step` per row of order [steps, batch] (indices into images [n, H, W, C]
    in [0, 1] and labels [n]). A Python loop over one jitted step of fixed batch shape (one
    compilation per image shape and process, whatever n), not lax.scan: XLA:CPU ran this conv
    net inside a scan ~30x slower per step and compiled it ~5x slower (measured on CPU)."""
    params, opt_state = _init(jnp.asarray(images[:1]), num_classes)
    for indices in order:
        params, opt_state = _step(params, opt_state, jnp.asarray(images[indices]), jnp.asarray(labels[indices]),
                                  num_classes)
    return params


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _predict(params, images, num_classes: int):
    return domain.DomainCNN(num_classes=num_classes).apply({"params": params}, images)[1].argmax(axis=1)


def gan_train(train_images: np.ndarray, train_labels, test_images: np.ndarray, test_labels, num_classes: int) -> float:
    """GAN-train: accuracy on real test images of a classifier trained on generated ones
    (Shmelkov et al. 2018, the GAN-train / GAN-test section).

    train_images [n, H, W, C] float in [0, 1] (the generated samples), train_labels int [n]
    (the classes they were generated for); test_images [m, H, W, C] in [0, 1] (real, held
    out), test_labels int [m]. Classifier: domain.DomainCNN(num_classes), initialised with
    GAN_TRAIN_SEED, `gan_train_steps(n)` Adam steps (learning rate GAN_TRAIN_LEARNING_RATE) on
    minibatches of GAN_TRAIN_BATCH drawn as one seeded permutation per epoch: bit-identical
    for the same inputs on one machine. Shmelkov et al. train a larger network to convergence
    and compare with the same network trained on real data; here the comparison is the
    `_ref_floor` reference (the same training on real train images), and the numbers are
    only comparable within this protocol (GAN_TRAIN_PROTOCOL).
    """
    train_images = np.asarray(train_images, np.float32)
    test_images = np.asarray(test_images, np.float32)
    if train_images.ndim != 4 or test_images.ndim != 4 or train_images.shape[1:] != test_images.shape[1:] or \
            len(train_images) < 1 or len(test_images) < 1:
        raise ValueError(f"image shapes {train_images.shape} and {test_images.shape} not allowed; "
                         "need [n >= 1, H, W, C] and [m >= 1, H, W, C]")
    train_labels = _check_labels(train_labels, len(train_images), num_classes, "train_labels")
    test_labels = _check_labels(test_labels, len(test_images), num_classes, "test_labels")
    rng = np.random.default_rng(GAN_TRAIN_SEED)
    steps = gan_train_steps(len(train_images))
    needed = steps * GAN_TRAIN_BATCH
    # Epoch-wise permutations (every sample once per epoch); a set smaller than a batch repeats within it.
    order = np.concatenate([rng.permutation(len(train_images)) for _ in range(-(-needed // len(train_images)))])
    order = order[:needed].reshape(steps, GAN_TRAIN_BATCH)
    with jax.default_matmul_precision("highest"):
        params = _train(train_images, train_labels, order, num_classes)
        predicted = np.asarray(_predict(params, jnp.asarray(test_images), num_classes))
    return float(np.mean(predicted == test_labels))


def class_fid(real_features: np.ndarray, real_labels, fake_features: np.ndarray, fake_labels,
              num_classes: int) -> dict[str, float]:
    """Per-class FID between generated and real features: {"mean": mean over classes,
    "max": the worst class, "classes": how many classes were scored}.

    real_features [n, d] with real_labels int [n]; fake_features [m, d] with fake_labels
    int [m] (the classes requested). A class is scored when both sides have >= 2 samples of
    it; none scored gives NaN. Small-sample bias: FID is biased upwards by roughly
    Tr(S_r)/n_r + Tr(S_f)/n_f, and with n_c < d the class covariances are singular; at the
    tiny protocol (digits test split, 300 images, ~30 per class, 128-d domain features) the
    per-class values are far above the pooled FID even for real data (measured: 300 real train
    images vs the test split, pooled fid_domain 6.3, per-class mean 18.8). Compare them only
    at one sample count, and with the `_ref_floor` reference (real train images scored the
    same way), not with FIDs of other protocols (Binkowski et al. 2018 and Chong & Forsyth
    2020 on the bias of FID at small n).
    """
    real_features = np.asarray(real_features, np.float64)
    fake_features = np.asarray(fake_features, np.float64)
    real_labels = _check_labels(real_labels, len(real_features), num_classes, "real_labels")
    fake_labels = _check_labels(fake_labels, len(fake_features), num_classes, "fake_labels")
    values = []
    for c in range(num_classes):
        real_c, fake_c = real_features[real_labels == c], fake_features[fake_labels == c]
        if len(real_c) >= 2 and len(fake_c) >= 2:
            values.append(frechet.frechet_distance_of_features(real_c, fake_c))
    if not values:
        return {"mean": float("nan"), "max": float("nan"), "classes": 0.0}
    return {"mean": float(np.mean(values)), "max": float(np.max(values)), "classes": float(len(values))}
