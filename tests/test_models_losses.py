"""Losses against their formulas (numpy), stable at extreme logits; penalties against
finite differences (float64) and the exact L2 weight set."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

enable_x64 = jax.enable_x64  # context manager (jax.experimental.enable_x64 was removed)

import models
from models import losses, penalties

REAL = np.array([-50.0, -2.0, 0.0, 0.5, 50.0], np.float32)
FAKE = np.array([50.0, 1.0, -0.3, 0.0, -50.0], np.float32)


def _log_sigmoid(x):
    x = x.astype(np.float64)
    return -np.logaddexp(0.0, -x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


EXPECTED = {  # (L_D, L_G) by hand, float64
    "mm": (-np.mean(_log_sigmoid(REAL)) - np.mean(_log_sigmoid(-FAKE)), np.mean(_log_sigmoid(-FAKE))),
    "ns": (-np.mean(_log_sigmoid(REAL)) - np.mean(_log_sigmoid(-FAKE)), -np.mean(_log_sigmoid(FAKE))),
    "wgan": (np.mean(FAKE) - np.mean(REAL), -np.mean(FAKE)),
    "ls": (0.5 * (np.mean((_sigmoid(REAL) - 1) ** 2) + np.mean(_sigmoid(FAKE) ** 2)),
           0.5 * np.mean((_sigmoid(FAKE) - 1) ** 2)),
    "hinge": (np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE)), -np.mean(FAKE)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_equals_formula_with_finite_gradients_at_extreme_logits(name):
    loss = losses.LOSSES.get(name)()
    d_value, state = loss.discriminator_loss(jnp.asarray(REAL), jnp.asarray(FAKE), loss.init_state())
    g_value = loss.generator_loss(jnp.asarray(FAKE), state)
    assert float(d_value) == pytest.approx(EXPECTED[name][0], rel=1e-5, abs=1e-5)
    assert float(g_value) == pytest.approx(EXPECTED[name][1], rel=1e-5, abs=1e-5)
    grads = jax.grad(lambda r, f: loss.discriminator_loss(r, f, {})[0], argnums=(0, 1))(jnp.asarray(REAL), jnp.asarray(FAKE))
    g_grad = jax.grad(lambda f: loss.generator_loss(f, {}))(jnp.asarray(FAKE))
    for g in (*grads, g_grad):
        assert bool(jnp.all(jnp.isfinite(g)))


def test_began_paper_loss_updates_k_in_the_d_step_and_clips_it():
    loss = losses.BeganPaperLoss(gamma=0.5, k_learning_rate=0.1)
    real_err = jnp.array([0.2, 0.4])  # mean 0.3
    fake_err = jnp.array([0.05, 0.15])  # mean 0.1
    state = {"k": jnp.asarray(0.5, jnp.float32)}
    value, new_state = loss.discriminator_loss(real_err, fake_err, state)
    assert float(value) == pytest.approx(0.3 - 0.5 * 0.1)
    assert float(new_state["k"]) == pytest.approx(0.5 + 0.1 * (0.5 * 0.3 - 0.1))
    assert float(loss.generator_loss(fake_err, new_state)) == pytest.approx(0.1)
    # k stays in [0, 1]
    _, low = loss.discriminator_loss(jnp.zeros(2), jnp.ones(2) * 100, {"k": jnp.asarray(0.0)})
    _, high = loss.discriminator_loss(jnp.ones(2) * 100, jnp.zeros(2), {"k": jnp.asarray(1.0)})
    assert float(low["k"]) == 0.0 and float(high["k"]) == 1.0


def test_began_is_v2s_k_after_the_step_and_unclipped():
    """compare_gan v2 BEGAN.py: the D step leaves k alone; update_k runs after the step,
    k + lambda (gamma L(x) - L(G(z))) with no clipping."""
    loss = losses.make_loss(types.SimpleNamespace(loss="began", began_gamma=0.5, began_k_learning_rate=0.1))
    assert isinstance(loss, losses.BeganLoss) and loss.gamma == 0.5 and loss.k_learning_rate == 0.1
    real_err = jnp.array([0.2, 0.4])  # mean 0.3
    fake_err = jnp.array([0.05, 0.15])  # mean 0.1
    state = {"k": jnp.asarray(0.5, jnp.float32)}
    value, same = loss.discriminator_loss(real_err, fake_err, state)
    assert float(value) == pytest.approx(0.3 - 0.5 * 0.1) and float(same["k"]) == 0.5
    assert float(loss.generator_loss(fake_err, state)) == pytest.approx(0.1)
    assert float(loss.after_step(real_err, fake_err, state)["k"]) == pytest.approx(0.5 + 0.1 * (0.5 * 0.3 - 0.1))
    # not clipped to [0, 1]
    assert float(loss.after_step(jnp.zeros(2), jnp.ones(2) * 100, {"k": jnp.asarray(0.0)})["k"]) == pytest.approx(-10)
    assert float(loss.after_step(jnp.ones(2) * 100, jnp.zeros(2), {"k": jnp.asarray(1.0)})["k"]) == pytest.approx(6)


def _tiny_critic(weights):
    """A nonlinear per-example critic [batch, h, w, c] -> [batch]."""
    return lambda x: jnp.sum(jnp.tanh(x * weights) ** 2 + 0.3 * x * weights, axis=(1, 2, 3))


def _finite_difference_slope_penalty(d_fn, points, step=1e-6):
    points = np.asarray(points, np.float64)
    grads = np.zeros_like(points)
    for index in np.ndindex(points.shape):
        plus, minus = points.copy(), points.copy()
        plus[index] += step
        minus[index] -= step
        b = index[0]
        grads[index] = (float(d_fn(jnp.asarray(plus))[b]) - float(d_fn(jnp.asarray(minus))[b])) / (2 * step)
    slopes = np.sqrt((grads**2).reshape(points.shape[0], -1).sum(1) + 1e-4)
    return np.mean((slopes - 1.0) ** 2)


def test_gradient_penalty_equals_finite_differences():
    with enable_x64(True):
        rng = jax.random.PRNGKey(0)
        real = jax.random.uniform(jax.random.PRNGKey(1), (3, 2, 2, 1), jnp.float64)
        fake = jax.random.uniform(jax.random.PRNGKey(2), (3, 2, 2, 1), jnp.float64)
        d_fn = _tiny_critic(jax.random.normal(jax.random.PRNGKey(3), (1, 2, 2, 1), jnp.float64) * 2)
        value = float(penalties.GradientPenalty()(d_fn, None, real, fake, rng))
        alpha = jax.random.uniform(rng, (3, 1, 1, 1), jnp.float64)  # per-example alpha ~ U[0, 1]
        expected = _finite_difference_slope_penalty(d_fn, real + alpha * (fake - real))
        assert value == pytest.approx(expected, rel=1e-6)
        assert value > 0.01


def test_dragan_penalty_equals_finite_differences_at_clipped_noisy_reals():
    with enable_x64(True):
        rng = jax.random.PRNGKey(4)
        real = jnp.concatenate([jnp.zeros((1, 2, 2, 1)), jax.random.uniform(jax.random.PRNGKey(5), (2, 2, 2, 1))]).astype(jnp.float64)
        d_fn = _tiny_critic(jax.random.normal(jax.random.PRNGKey(6), (1, 2, 2, 1), jnp.float64) * 2)
        value = float(penalties.DraganPenalty((0.0, 1.0))(d_fn, None, real, None, rng))
        std = np.std(np.asarray(real))  # one scalar over the whole batch
        noise = np.asarray(jax.random.uniform(rng, real.shape, jnp.float64)) - 0.5
        noisy = np.clip(np.asarray(real) + std * noise, 0.0, 1.0)
        assert noisy.min() == 0.0  # the all-zero example was clipped
        assert value == pytest.approx(_finite_difference_slope_penalty(d_fn, noisy), rel=1e-6)


def test_l2_penalty_is_half_mean_over_the_eight_sndcgan_kernels():
    config = types.SimpleNamespace(
        architecture="sndcgan", loss="ns", normalization="spectral", penalty="l2", z_dim=8, width_multiplier=1 / 16,
        image_size=8, weight_clip=0.01, began_gamma=0.5, began_k_learning_rate=0.001, resnet_d_shortcut="conv",
        resnet_d_cin=False, resnet_d_opt=False, resnet_d_pooling="mean", resnet_tanh=False, generator_bn_epsilon=None)
    gan = models.build(config, (8, 8, 1))
    _, d_vars = gan.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda p: p + 0.5, d_vars["params"])  # biases nonzero: must be ignored
    names = [f"conv{i}" for i in range(7)] + ["linear"]  # the 7 convs and the linear: 8 layers
    expected = np.mean([0.5 * np.sum(np.asarray(params[n]["kernel"], np.float64) ** 2) for n in names])
    value = float(gan.penalty(None, params, None, None, None))
    assert value == pytest.approx(expected, rel=1e-5)
    assert len(penalties.weight_kernels(params)) == 8


def test_weight_clipping_projects_all_parameters():
    clip = penalties.WeightClipping(clip=0.01)
    params = {"conv": {"kernel": jnp.array([-1.0, 0.005, 2.0]), "bias": jnp.array([0.5])}}
    projected = clip.project(params)
    np.testing.assert_allclose(projected["conv"]["kernel"], [-0.01, 0.005, 0.01])
    np.testing.assert_allclose(projected["conv"]["bias"], [0.01])
    assert float(clip(None, params, None, None, None)) == 0.0
