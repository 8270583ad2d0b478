"""GAN losses on D outputs (spec §2; hinge from compare_gan v3 loss_lib; BEGAN as compare_gan
v2 trains it, and with the BEGAN paper's clipped k as `began_paper`). r, f: D outputs
[batch] on real and fake; all means over the batch.

Every loss has `init_state() -> dict`, `discriminator_loss(real_out, fake_out, state) ->
(scalar, new_state)` and `generator_loss(fake_out, state) -> scalar`. A loss with
`after_step(real_out, fake_out, state) -> new_state` also gets D's outputs recomputed after
each training step (v2's BEGAN k update). NS and MM take the label tricks
(config.label_smoothing, config.label_flip_probability); with flips (`needs_key`) their
`discriminator_loss` takes `key=`. Sigmoid cross entropies are written with
softplus, stable for any logit (log sigmoid(x) = -softplus(-x)).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from models.registry import Registry

softplus = jax.nn.softplus
LOSSES: Registry[type] = Registry("loss")


class _StatelessLoss:
    def init_state(self) -> dict:
        return {}


def label_targets(batch: int, smoothing: float = 0.0, flip_probability: float = 0.0, key=None):
    """D's sigmoid cross-entropy targets for a batch of real and a batch of fake examples:
    (real_targets [batch], fake_targets [batch]) float32.

    One-sided label smoothing (Salimans et al. 2016, sec. 3.4): the positive target is
    1 - smoothing, the negative stays 0. Noisy labels: each target is independently flipped
    to the other class's target (1 - s <-> 0) with probability `flip_probability`, drawn
    from `key` (needed when flip_probability > 0); at 1 every target is swapped."""
    positive = jnp.full((batch,), 1.0 - smoothing, jnp.float32)
    negative = jnp.zeros((batch,), jnp.float32)
    if flip_probability <= 0.0:
        return positive, negative
    if key is None:
        raise ValueError("label_flip_probability > 0 needs a key to draw the flips")
    real_key, fake_key = jax.random.split(key)
    flip_real = jax.random.bernoulli(real_key, flip_probability, (batch,))
    flip_fake = jax.random.bernoulli(fake_key, flip_probability, (batch,))
    return jnp.where(flip_real, negative, positive), jnp.where(flip_fake, positive, negative)


def sigmoid_cross_entropy(logits, targets):
    """Per-example BCE(sigmoid(x), t) = t softplus(-x) + (1 - t) softplus(x) (stable for any x)."""
    return targets * softplus(-logits) + (1.0 - targets) * softplus(logits)


@dataclasses.dataclass(frozen=True)
class _LabelledLoss(_StatelessLoss):
    """D's sigmoid cross-entropy loss with the label tricks of config.label_smoothing and
    config.label_flip_probability. At their defaults (0, 0) D's loss is the plain formula,
    computed as before: L_D = mean softplus(-r) + mean softplus(f). Otherwise L_D =
    mean BCE(r, t_r) + mean BCE(f, t_f) with the targets of `label_targets`."""

    label_smoothing: float = 0.0
    label_flip_probability: float = 0.0

    @property
    def needs_key(self) -> bool:
        """True when discriminator_loss draws label flips (pass `key`)."""
        return self.label_flip_probability > 0.0

    def discriminator_loss(self, real_out, fake_out, state, key=None):
        if self.label_smoothing == 0.0 and self.label_flip_probability == 0.0:
            return jnp.mean(softplus(-real_out)) + jnp.mean(softplus(fake_out)), state
        real_t, fake_t = label_targets(real_out.shape[0], self.label_smoothing, self.label_flip_probability, key)
        return jnp.mean(sigmoid_cross_entropy(real_out, real_t)) + jnp.mean(sigmoid_cross_entropy(fake_out, fake_t)), state


@LOSSES.register("mm")
class MinimaxLoss(_LabelledLoss):
    """Minimax (Goodfellow et al. 2014; v2 GAN_MINMAX): L_D = mean softplus(-r) + mean softplus(f);
    L_G = mean log(1 - sigmoid(f)) = -mean softplus(f)."""

    def generator_loss(self, fake_out, state):
        return -jnp.mean(softplus(fake_out))


@LOSSES.register("ns")
class NonSaturatingLoss(_LabelledLoss):
    """Non-saturating (v2 GAN_PENALTY): L_D = mean softplus(-r) + mean softplus(f);
    L_G = mean softplus(-f) = -mean log sigmoid(f)."""

    def generator_loss(self, fake_out, state):
        return jnp.mean(softplus(-fake_out))


@LOSSES.register("wgan")
class WassersteinLoss(_StatelessLoss):
    """WGAN (v2 WGAN_PENALTY): L_D = mean f - mean r; L_G = -mean f."""

    def discriminator_loss(self, real_out, fake_out, state):
        return jnp.mean(fake_out) - jnp.mean(real_out), state

    def generator_loss(self, fake_out, state):
        return -jnp.mean(fake_out)


@LOSSES.register("ls")
class LeastSquaresLoss(_StatelessLoss):
    """LSGAN (v2 LSGAN_PENALTY) on sigmoid outputs: L_D = 0.5 (mean (sigmoid(r) - 1)^2 +
    mean sigmoid(f)^2); L_G = 0.5 mean (sigmoid(f) - 1)^2. (sigmoid(x) - 1 = -sigmoid(-x).)"""

    def discriminator_loss(self, real_out, fake_out, state):
        return 0.5 * (jnp.mean(jax.nn.sigmoid(-real_out) ** 2) + jnp.mean(jax.nn.sigmoid(fake_out) ** 2)), state

    def generator_loss(self, fake_out, state):
        return 0.5 * jnp.mean(jax.nn.sigmoid(-fake_out) ** 2)


@LOSSES.register("hinge")
class HingeLoss(_StatelessLoss):
    """Hinge (compare_gan v3 loss_lib): L_D = mean relu(1 - r) + mean relu(1 + f); L_G = -mean f."""

    def discriminator_loss(self, real_out, fake_out, state):
        return jnp.mean(jax.nn.relu(1.0 - real_out)) + jnp.mean(jax.nn.relu(1.0 + fake_out)), state

    def generator_loss(self, fake_out, state):
        return -jnp.mean(fake_out)


@dataclasses.dataclass(frozen=True)
class _BeganLosses:
    """BEGAN's losses (Berthelot et al. 2017, eq. 4). D outputs per-example reconstruction
    errors L(x) = mean_{h,w,c} |x - AE(x)| >= 0, so mean over the batch is v2's
    tf.reduce_mean(tf.abs(out - x)). L_D = mean L(x) - k mean L(G(z)); L_G = mean L(G(z));
    k starts at 0 and is held fixed (stop-gradient) inside the losses. State: {"k": float32}."""

    gamma: float = 0.5
    k_learning_rate: float = 0.001

    def init_state(self) -> dict:
        return {"k": jnp.zeros((), jnp.float32)}

    def _d_loss(self, real_out, fake_out, state):
        k = jax.lax.stop_gradient(state["k"])
        return jnp.mean(real_out) - k * jnp.mean(fake_out)

    def _k_step(self, real_out, fake_out, k):
        """k + lambda_k (gamma mean L(x) - mean L(G(z))), no gradient."""
        balance = jax.lax.stop_gradient(self.gamma * jnp.mean(real_out) - jnp.mean(fake_out))
        return k + self.k_learning_rate * balance

    def generator_loss(self, fake_out, state):
        return jnp.mean(fake_out)


@LOSSES.register("began")
class BeganLoss(_BeganLosses):
    """BEGAN as compare_gan v2 (gans/BEGAN.py) trains it: the D step leaves k alone; after
    the whole training step (the D update, and the G update when the group has one) the
    train step calls `after_step` with D's errors on the same real batch and z, recomputed
    with the updated weights (v2's `after_training_step_hook` runs `update_k` in a new
    session.run), and k <- k + lambda_k (gamma mean L(x) - mean L(G(z))), NOT clipped."""

    def discriminator_loss(self, real_out, fake_out, state):
        return self._d_loss(real_out, fake_out, state), state

    def after_step(self, real_out, fake_out, state):
        return {"k": self._k_step(real_out, fake_out, state["k"]).astype(jnp.float32)}


@LOSSES.register("began_paper")
class BeganPaperLoss(_BeganLosses):
    """BEGAN with the paper's k (Berthelot et al. 2017, eq. 4): k <- clip(k + lambda_k (gamma
    mean L(x) - mean L(G(z))), 0, 1), from the errors of the D step itself (before its
    update). Not v2's form (see BeganLoss): a departure kept for comparison."""

    def discriminator_loss(self, real_out, fake_out, state):
        new_k = jnp.clip(self._k_step(real_out, fake_out, jax.lax.stop_gradient(state["k"])), 0.0, 1.0)
        return self._d_loss(real_out, fake_out, state), {"k": new_k.astype(jnp.float32)}


# Losses whose D is BEGAN's auto-encoder (models.architectures.began).
AUTOENCODER_LOSSES = ("began", "began_paper")


def make_loss(config):
    """The loss object named by config.loss (BEGAN takes began_gamma, began_k_learning_rate)."""
    cls = LOSSES.get(config.loss)
    if issubclass(cls, _BeganLosses):
        return cls(gamma=float(config.began_gamma), k_learning_rate=float(config.began_k_learning_rate))
    if issubclass(cls, _LabelledLoss):
        return cls(label_smoothing=float(getattr(config, "label_smoothing", 0.0)),
                   label_flip_probability=float(getattr(config, "label_flip_probability", 0.0)))
    return cls()
