"""Every (architecture x loss x normalization x penalty) arm of the paper's studies builds and
traces a full D + G gradient step; a covering subset (every component at least once per
architecture) compiles and takes a real step with finite losses and gradients.
Tiny: width 1/16, batch 4, each architecture's smallest image size."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models

SMALLEST = {"sndcgan": 8, "resnet19": 8, "resnet_cifar": 16}
NORMS = ("none", "batch", "layer", "spectral")


def make_config(**overrides):
    values = dict(
        architecture="sndcgan", loss="ns", normalization="spectral", penalty="gp", z_dim=8, width_multiplier=1 / 16,
        image_size=8, weight_clip=0.01, began_gamma=0.5, began_k_learning_rate=0.001, resnet_d_shortcut="conv",
        resnet_d_cin=False, resnet_d_opt=False, resnet_d_pooling="mean", resnet_tanh=False, generator_bn_epsilon=None,
    )
    values.update(overrides)
    values["image_size"] = SMALLEST[values["architecture"]]
    return types.SimpleNamespace(**values)


def paper_arms():
    arms = []
    for arch in ("sndcgan", "resnet19"):
        # study 1: NS loss x D normalization x penalty
        arms += [dict(architecture=arch, loss="ns", normalization=n, penalty=p)
                 for n in NORMS for p in ("none", "gp", "dragan", "l2")]
        # study 2: losses x {plain, GP, SN}
        for loss in ("mm", "wgan", "ls", "began"):
            arms += [dict(architecture=arch, loss=loss, normalization=n, penalty=p)
                     for n, p in (("none", "none"), ("none", "gp"), ("spectral", "none"))]
    # study 5: ResNet-CIFAR, SN, NS with each ablation switch and all of them
    ablations = [{}, {"resnet_d_shortcut": "identity"}, {"resnet_d_cin": True}, {"resnet_d_opt": True},
                 {"resnet_d_cin": True, "resnet_d_opt": True}, {"resnet_d_pooling": "sum"}, {"resnet_tanh": True},
                 {"generator_bn_epsilon": 2e-5},
                 {"resnet_d_shortcut": "identity", "resnet_d_cin": True, "resnet_d_opt": True,
                  "resnet_d_pooling": "sum", "resnet_tanh": True, "generator_bn_epsilon": 2e-5}]
    arms += [dict(architecture="resnet_cifar", loss="ns", normalization="spectral", penalty="none", **a) for a in ablations]
    arms += [dict(architecture="sndcgan", loss="wgan", normalization="none", penalty="clip"),
             dict(architecture="sndcgan", loss="hinge", normalization="spectral", penalty="none")]
    return arms


def make_step(gan, batch=4):
    """One D and one G gradient step as the integrator's loop computes them (train mode,
    non-param collections threaded through, penalty with the post-call D state)."""

    def step(g_vars, d_vars, loss_state, rng):
        z_key, real_key, penalty_key = jax.random.split(rng, 3)
        z = jax.random.uniform(z_key, (batch, gan.z_dim), minval=-1.0, maxval=1.0)
        low, high = gan.data_range
        real = jax.random.uniform(real_key, (batch,) + gan.image_shape, minval=low, maxval=high)
        g_rest = {k: v for k, v in g_vars.items() if k != "params"}
        d_rest = {k: v for k, v in d_vars.items() if k != "params"}
        fake, _ = gan.generator.apply(g_vars, z, train=True, mutable=list(g_rest))

        def d_loss(d_params):
            real_out, state = gan.discriminator.apply({"params": d_params, **d_rest}, real, train=True, mutable=list(d_rest))
            fake_out, state = gan.discriminator.apply({"params": d_params, **state}, fake, train=True, mutable=list(d_rest))
            loss, new_loss_state = gan.loss.discriminator_loss(real_out, fake_out, loss_state)

            def d_fn(x):
                return gan.discriminator.apply({"params": d_params, **state}, x, train=True, mutable=list(d_rest))[0]

            return loss + 1.0 * gan.penalty(d_fn, d_params, real, fake, penalty_key), new_loss_state

        (d_value, new_loss_state), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d_vars["params"])

        def g_loss(g_params):
            images, _ = gan.generator.apply({"params": g_params, **g_rest}, z, train=True, mutable=list(g_rest))
            out, _ = gan.discriminator.apply(d_vars, images, train=True, mutable=list(d_rest))
            return gan.loss.generator_loss(out, new_loss_state)

        g_value, g_grads = jax.value_and_grad(g_loss)(g_vars["params"])
        new_d = gan.penalty.project(jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, d_vars["params"], d_grads))
        return d_value, g_value, d_grads, g_grads, new_d, new_loss_state

    return step


def _name(arm):
    return "-".join(f"{v}" for v in arm.values())


@pytest.mark.parametrize("arm", paper_arms(), ids=_name)
def test_paper_arm_builds_and_traces_a_step(arm):
    config = make_config(**arm)
    models.check(config)
    size = config.image_size
    gan = models.build(config, (size, size, 3))
    g_vars, d_vars = jax.eval_shape(gan.init, jax.random.PRNGKey(0))
    d_value, g_value, d_grads, g_grads, new_d, loss_state = jax.eval_shape(
        make_step(gan), g_vars, d_vars, gan.loss.init_state(), jax.random.PRNGKey(1))
    assert d_value.shape == () and g_value.shape == ()
    assert jax.tree_util.tree_structure(d_grads) == jax.tree_util.tree_structure(d_vars["params"])
    assert set(loss_state) == set(gan.loss.init_state())


# Every architecture with every normalization, loss and penalty at least once.
COVERING = [
    dict(architecture="sndcgan", loss="ns", normalization="spectral", penalty="gp"),
    dict(architecture="sndcgan", loss="began", normalization="batch", penalty="dragan"),
    dict(architecture="sndcgan", loss="ls", normalization="layer", penalty="l2"),
    dict(architecture="sndcgan", loss="wgan", normalization="none", penalty="clip"),
    dict(architecture="resnet19", loss="mm", normalization="batch", penalty="gp"),
    dict(architecture="resnet19", loss="hinge", normalization="layer", penalty="dragan"),
    dict(architecture="resnet19", loss="began", normalization="spectral", penalty="l2"),
    dict(architecture="resnet_cifar", loss="ns", normalization="spectral", penalty="gp", resnet_d_shortcut="identity",
         resnet_d_cin=True, resnet_d_opt=True, resnet_d_pooling="sum", resnet_tanh=True, generator_bn_epsilon=2e-5),
]


@pytest.mark.parametrize("arm", COVERING, ids=_name)
def test_covering_arm_takes_a_finite_gradient_step(arm):
    config = make_config(**arm)
    size = config.image_size
    gan = models.build(config, (size, size, 3))
    g_vars, d_vars = gan.init(jax.random.PRNGKey(0))
    d_value, g_value, d_grads, g_grads, new_d, loss_state = jax.jit(make_step(gan))(
        g_vars, d_vars, gan.loss.init_state(), jax.random.PRNGKey(1))
    leaves = [d_value, g_value] + jax.tree_util.tree_leaves((d_grads, g_grads, new_d, loss_state))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(d_grads))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(g_grads))
    if config.penalty == "clip":
        assert max(float(jnp.abs(p).max()) for p in jax.tree_util.tree_leaves(new_d)) <= config.weight_clip
    if config.loss == "began":
        assert 0.0 <= float(loss_state["k"]) <= 1.0
