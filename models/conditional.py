"""Conditional and latent-structured GANs: class-conditional G, projection / auxiliary-classifier
D, InfoGAN's codes and Q head.

`CONDITIONINGS` names how class labels y in [0, K) enter the GAN (config.conditioning):
  "none"       the paper's unconditional GAN (no labels anywhere).
  "projection" G: class-conditional batch norm (de Vries et al. 2017, "Modulating early visual
               processing by language"; Miyato & Koyama 2018, sec. 3 / appendix): every BN of G
               normalises without its own affine and applies the label's gamma_y, beta_y.
               D: the projection discriminator (Miyato & Koyama 2018, eq. 3):
               D(x, y) = psi(phi(x)) + <V e_y, phi(x)> = linear(phi) + <embed(y), phi>, with
               phi D's flattened last features; the embedding V [K, F] is spectrally
               normalised when D is (their SNEmbedID).
  "acgan"      G: the same class-conditional BN (our choice: Odena et al. 2017 feed a one-hot y
               into z; using one conditional G for both arms leaves D as the only difference).
               D: an auxiliary classifier head (Odena et al. 2017, sec. 3): class logits
               [B, K] = linear(phi) next to the real/fake logit. L_C = CE(real, y_real) +
               CE(fake, y_fake) is added to D's loss and CE(fake, y_fake) to G's, weighted by
               config.acgan_class_weight (the paper: D maximises L_S + L_C, G maximises L_C - L_S;
               only the fake term depends on G).
InfoGAN (Chen et al. 2016), orthogonal to the above (config.infogan_categories,
infogan_continuous): G's input is [z, one_hot(c_cat) (K), c_cont (n)], c_cat ~ uniform over
K, c_cont ~ U[-1, 1]^n; a Q head shares D's body: q = linear(phi) [B, K + n] (K categorical
logits, then the n means of a fixed unit-variance Gaussian). The mutual-information lower
bound (eq. 4-5) L_I(G, Q) = E[log Q(c | G(z, c))] + H(c) is maximised by G and Q; we minimise
`infogan_loss` = CE(q_cat, c_cat) + sum_j 0.5 (c_cont_j - mu_j)^2 (batch means), i.e.
-E[log Q] up to the constant n/2 log(2 pi) (dropped), weighted by config.infogan_weight and
added to G's loss and to D's (D and Q are one network; D's term is on its fake batch).

The auxiliary heads (classifier, Q) are plain linear layers (no spectral norm): they are not
the critic whose Lipschitz constant SN controls; they read D's (normalised) body.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.layers import Dense, normal_init
from models.normalization import spectral_normalize
from models.registry import Registry

# fold_in constant that separates a D update's condition key (fake labels, codes) from the
# keys the unconditional step already draws (z and the penalty's), so those stay as they were.
CONDITION_STREAM = 0x636F6E64  # "cond"


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """How class labels enter G and D (one `CONDITIONINGS` entry)."""

    name: str
    generator_labels: bool  # G's batch norms are class-conditional
    projection: bool  # D adds <embed(y), phi(x)>
    classifier: bool  # D has an auxiliary K-way classifier head (ACGAN)


CONDITIONINGS: Registry[Conditioning] = Registry("conditioning")
for _entry in (Conditioning("none", False, False, False), Conditioning("projection", True, True, False),
               Conditioning("acgan", True, False, True)):
    CONDITIONINGS.add(_entry.name, _entry)


@dataclasses.dataclass(frozen=True)
class ConditionSpec:
    """The conditioning of one built GAN: labels (K = num_classes) and/or InfoGAN codes."""

    conditioning: str = "none"
    num_classes: int = 0  # K of the dataset when conditioning != "none"
    class_weight: float = 1.0  # ACGAN's weight of L_C
    categories: int = 0  # InfoGAN: K of its one categorical code (0: none)
    continuous: int = 0  # InfoGAN: number of U[-1, 1] codes
    info_weight: float = 1.0  # InfoGAN's lambda

    @property
    def kind(self) -> Conditioning:
        return CONDITIONINGS.get(self.conditioning)

    @property
    def labelled(self) -> bool:
        """G and D take class labels; the train step takes the real batches' labels."""
        return self.conditioning != "none"

    @property
    def code_dim(self) -> int:
        """G's input dimensions beyond z: one_hot(c_cat) and c_cont."""
        return self.categories + self.continuous

    @property
    def infogan(self) -> bool:
        return self.code_dim > 0

    @property
    def active(self) -> bool:
        return self.labelled or self.infogan

    @property
    def aux_outputs(self) -> int:
        """Width of D's auxiliary head: K class logits (ACGAN), K + n (InfoGAN's Q), or 0."""
        if self.kind.classifier:
            return self.num_classes
        return self.code_dim

    def draw(self, key: jax.Array, batch: int) -> dict:
        """G's conditions of a fake batch from `key`: {"labels": int32 [B]} uniform over K, or
        {"categorical": int32 [B] uniform over K_cat, "continuous": float32 [B, n] ~ U[-1, 1]}."""
        if self.labelled:
            return {"labels": jax.random.randint(key, (batch,), 0, self.num_classes, jnp.int32)}
        cat_key, cont_key = jax.random.split(key)
        codes = {}
        if self.categories:
            codes["categorical"] = jax.random.randint(cat_key, (batch,), 0, self.categories, jnp.int32)
        if self.continuous:
            codes["continuous"] = jax.random.uniform(cont_key, (batch, self.continuous), jnp.float32, -1.0, 1.0)
        return codes

    def generator_inputs(self, z: jnp.ndarray, conditions: dict) -> tuple[jnp.ndarray, dict]:
        """(G's input, G's keyword arguments): z and labels, or [z, one_hot(c_cat), c_cont]."""
        if self.labelled:
            return z, {"labels": conditions["labels"]}
        parts = [z]
        if self.categories:
            parts.append(jax.nn.one_hot(conditions["categorical"], self.categories, dtype=z.dtype))
        if self.continuous:
            parts.append(conditions["continuous"])
        return jnp.concatenate(parts, axis=-1), {}

    def discriminator_kwargs(self, labels) -> dict:
        """D's keyword arguments for a batch with class `labels` (only the projection D reads them)."""
        return {"labels": labels} if self.kind.projection else {}

    def discriminator_loss(self, real_aux, real_labels, fake_aux, conditions) -> jnp.ndarray | None:
        """The term D's loss gets beyond the adversarial loss (weighted), or None."""
        if self.kind.classifier:
            return self.class_weight * acgan_class_loss(real_aux, real_labels, fake_aux, conditions["labels"])
        if self.infogan:
            return self.info_weight * infogan_loss(fake_aux, conditions, self.categories)
        return None

    def generator_loss(self, fake_aux, conditions) -> jnp.ndarray | None:
        """The term G's loss gets beyond the adversarial loss (weighted), or None."""
        if self.kind.classifier:
            return self.class_weight * cross_entropy(fake_aux, conditions["labels"])
        if self.infogan:
            return self.info_weight * infogan_loss(fake_aux, conditions, self.categories)
        return None


def spec(config: Any, num_classes: int) -> ConditionSpec:
    """The ConditionSpec of a config (fields absent on older configs read as their defaults)."""
    conditioning = getattr(config, "conditioning", "none")
    CONDITIONINGS.get(conditioning)
    if conditioning != "none" and num_classes < 2:
        raise ValueError(f"conditioning={conditioning!r} needs a labelled dataset (num_classes={num_classes})")
    return ConditionSpec(
        conditioning=conditioning,
        num_classes=int(num_classes) if conditioning != "none" else 0,
        class_weight=float(getattr(config, "acgan_class_weight", 1.0)),
        categories=int(getattr(config, "infogan_categories", 0)),
        continuous=int(getattr(config, "infogan_continuous", 0)),
        info_weight=float(getattr(config, "infogan_weight", 1.0)),
    )


def split_output(out) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """D's output -> (real/fake logits [B], auxiliary head [B, A] or None)."""
    if isinstance(out, tuple):
        return out
    return out, None


# ----------------------------------------------------------------------------- losses
def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """mean_b -log softmax(logits_b)[labels_b]; logits [B, K], labels int [B]."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1))


def acgan_class_loss(real_logits, real_labels, fake_logits, fake_labels) -> jnp.ndarray:
    """ACGAN's -L_C (Odena et al. 2017, eq. 2): CE(real class logits, y_real) + CE(fake, y_fake)."""
    return cross_entropy(real_logits, real_labels) + cross_entropy(fake_logits, fake_labels)


def infogan_loss(q_out: jnp.ndarray, codes: dict, categories: int) -> jnp.ndarray:
    """-L_I up to constants (Chen et al. 2016, eq. 5): q_out [B, K + n] (K categorical logits,
    then the means mu [B, n] of a unit-variance Gaussian) ->
    CE(q_cat, c_cat) + mean_b sum_j 0.5 (c_cont_bj - mu_bj)^2 (the -log N(c; mu, 1) without n/2 log 2 pi)."""
    total = jnp.zeros((), jnp.float32)
    if categories:
        total = total + cross_entropy(q_out[:, :categories], codes["categorical"])
    if "continuous" in codes:
        mu = q_out[:, categories:]
        total = total + jnp.mean(jnp.sum(0.5 * (codes["continuous"] - mu) ** 2, axis=-1))
    return total


# ----------------------------------------------------------------------------- layers
class ConditionalBatchNorm(nn.Module):
    """Class-conditional batch norm (de Vries et al. 2017; Miyato & Koyama 2018):
    x [B, ..., C], labels int [B] -> BN(x) * gamma[y] + beta[y], gamma [K, C] = 1, beta [K, C] = 0
    at init. Statistics (and their moving averages, in "batch_stats" under `norm`) are the
    unconditional BN's: only the affine depends on the class."""

    num_classes: int
    use_running_average: bool
    momentum: float
    epsilon: float

    @nn.compact
    def __call__(self, x: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        x = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                         epsilon=self.epsilon, use_bias=False, use_scale=False, use_fast_variance=False,
                         name="norm")(x)
        channels = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (self.num_classes, channels), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (self.num_classes, channels), jnp.float32)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (channels,)
        return x * gamma[labels].reshape(shape) + beta[labels].reshape(shape)


def generator_norm(num_classes: int, labels, train: bool, momentum: float, epsilon: float):
    """G's batch norm factory: name -> (x -> normalised x); class-conditional when num_classes > 0."""
    if num_classes:
        return lambda name: (lambda x: ConditionalBatchNorm(num_classes, not train, momentum, epsilon, name=name)(x, labels))
    return lambda name: nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                                     use_fast_variance=False, name=name)


class Embed(nn.Module):
    """The projection discriminator's class embedding V [K, F] ~ N(0, 0.02): labels [B] -> [B, F];
    V / sigma(V) under spectral normalization (power iteration on V as a [K, F] matrix)."""

    num_classes: int
    features: int
    spectral: bool = False

    @nn.compact
    def __call__(self, labels: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        table = self.param("embedding", normal_init, (self.num_classes, self.features), jnp.float32)
        if self.spectral:
            table = spectral_normalize(self, table, train)
        return table[labels]


def discriminator_head(owner: nn.Module, phi: jnp.ndarray, labels, train: bool, *, spectral: bool,
                       conditioning: str, num_classes: int, aux_outputs: int):
    """D's output layers on its flattened features phi [B, F], created inside `owner` (the calling D).

    Returns logits [B] (projection: linear(phi) + <embed(y), phi>, Miyato & Koyama 2018 eq. 3),
    or (logits [B], aux [B, aux_outputs]) with an auxiliary head (ACGAN classifier, InfoGAN Q).
    phi is sown into "intermediates" as "features" (tests check the projection by hand).
    """
    kind = CONDITIONINGS.get(conditioning)
    owner.sow("intermediates", "features", phi)
    logits = Dense(1, spectral, name="linear")(phi, train)[:, 0]
    if kind.projection:
        if labels is None:
            raise ValueError("the projection discriminator needs the batch's class labels")
        embedded = Embed(num_classes, phi.shape[-1], spectral, name="embedding")(labels, train)
        logits = logits + jnp.sum(embedded * phi, axis=-1)
    if aux_outputs:
        return logits, Dense(aux_outputs, False, name="aux")(phi, train)
    return logits
