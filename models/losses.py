"""GAN losses on D outputs (spec §2; hinge from compare_gan v3 loss_lib; BEGAN as compare_gan
v2 trains it, and with the BEGAN paper's clipped k as `began_paper`). r, f: D outputs
[batch] on real and fake; all means over the batch.

Every loss has `init_state() -> dict`, `discriminator_loss(real_out, fake_out, state) ->
(scalar, new_state)` and `generator_loss(fake_out, state) -> scalar`. A loss with
`after_step(real_out, fake_out, state) -> new_state` also gets D's outputs recomputed after
each training step (v2's BEGAN k update). Sigmoid cross entropies are written with
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


@LOSSES.register("mm")
class MinimaxLoss(_StatelessLoss):
    """Minimax (Goodfellow et al. 2014; v2 GAN_MINMAX): L_D = mean softplus(-r) + mean softplus(f);
    L_G = mean log(1 - sigmoid(f)) = -mean softplus(f)."""

    def discriminator_loss(self, real_out, fake_out, state):
        return jnp.mean(softplus(-real_out)) + jnp.mean(softplus(fake_out)), state

    def generator_loss(self, fake_out, state):
        return -jnp.mean(softplus(fake_out))


@LOSSES.register("ns")
class NonSaturatingLoss(_StatelessLoss):
    """Non-saturating (v2 GAN_PENALTY): L_D = mean softplus(-r) + mean softplus(f);
    L_G = mean softplus(-f) = -mean log sigmoid(f)."""

    def discriminator_loss(self, real_out, fake_out, state):
        return jnp.mean(softplus(-real_out)) + jnp.mean(softplus(fake_out)), state

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
    return cls()
