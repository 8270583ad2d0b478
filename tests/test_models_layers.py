"""Layers and normalizations: our convolutions and upsampling equal the textbook ops (values,
gradients, double backward), spectral norm
matches numpy's singular values, G batch-norm state updates only in training."""
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import layers, normalization


def test_subpixel_deconv_equals_conv_transpose():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 3, 2))
    reference = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = layers.deconv4x4_stride2(x, kernel)
    assert ours.shape == (2, 10, 6, 2) == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=1e-5)


def test_subpixel_unpool_conv_equals_unpool_then_conv():
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 3, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 3, 2))
    upsampled = layers.unpool(x)
    # zero insertion: value at the top-left of each 2x2 cell, zeros elsewhere
    np.testing.assert_array_equal(upsampled[:, ::2, ::2], x)
    assert float(jnp.abs(upsampled[:, 1::2]).max()) == 0.0 and float(jnp.abs(upsampled[:, :, 1::2]).max()) == 0.0
    reference = jax.lax.conv_general_dilated(upsampled, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(layers.unpool_conv3x3(x, kernel), reference, atol=1e-5, rtol=1e-5)


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _gradients(function, x, kernel, cotangent):
    """(d/dx, d/dkernel) of <cotangent, function(x, kernel)> and of the squared input-gradient
    norm (the double backward of the gradient penalties) with respect to the kernel."""
    first = jax.grad(lambda x, k: jnp.sum(function(x, k) * cotangent), argnums=(0, 1))(x, kernel)
    input_norm = lambda k: jnp.sum(jax.grad(lambda x: jnp.sum(function(x, k) * cotangent))(x) ** 2)  # noqa: E731
    return (*first, jax.grad(input_norm)(kernel))


@pytest.mark.parametrize("kernel_size, stride, height", [(3, 1, 5), (4, 2, 6), (4, 2, 7), (3, 2, 5), (1, 1, 3)])
def test_conv2d_values_and_gradients_equal_lax_convolution(kernel_size, stride, height):
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (2, height, 4, 3), jnp.float64)
        kernel = jax.random.normal(jax.random.PRNGKey(1), (kernel_size, kernel_size, 3, 5), jnp.float64)
        padding = tuple(layers.same_padding(size, kernel_size, stride) for size in x.shape[1:3])
        reference = lambda x, k: jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME", dimension_numbers=_DIMENSIONS)  # noqa: E731
        ours = lambda x, k: layers.conv2d(x, k, stride, padding)  # noqa: E731
        expected = reference(x, kernel)
        np.testing.assert_allclose(ours(x, kernel), expected, rtol=1e-12, atol=1e-12)
        cotangent = jax.random.normal(jax.random.PRNGKey(2), expected.shape, jnp.float64)
        for got, want in zip(_gradients(ours, x, kernel, cotangent), _gradients(reference, x, kernel, cotangent)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_upsampling_gradients_equal_textbook_ops():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 3, 3), jnp.float64)
        cotangent = jax.random.normal(jax.random.PRNGKey(4), (2, 10, 6, 2), jnp.float64)
        cases = (
            (layers.deconv4x4_stride2, 4,
             lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=_DIMENSIONS)),
            (layers.unpool_conv3x3, 3,
             lambda x, k: jax.lax.conv_general_dilated(layers.unpool(x), k, (1, 1), "SAME", dimension_numbers=_DIMENSIONS)),
        )
        for ours, kernel_size, reference in cases:
            kernel = jax.random.normal(jax.random.PRNGKey(kernel_size), (kernel_size, kernel_size, 3, 2), jnp.float64)
            np.testing.assert_allclose(ours(x, kernel), reference(x, kernel), rtol=1e-12, atol=1e-12)
            for got, want in zip(_gradients(ours, x, kernel, cotangent), _gradients(reference, x, kernel, cotangent)):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


class _SpectralKernel(nn.Module):
    """Returns (raw kernel, normalized kernel) of a [3, 3, 2, 4] kernel."""

    @nn.compact
    def __call__(self, train: bool):
        kernel = self.param("kernel", nn.initializers.normal(1.0), (3, 3, 2, 4))
        return kernel, normalization.spectral_normalize(self, kernel, train)


def test_spectral_norm_power_iteration_matches_numpy():
    module = _SpectralKernel()
    variables = module.init(jax.random.PRNGKey(4), train=False)
    assert variables["spectral"]["u"].shape == (18, 1)  # [k*k*c_in, 1]

    @jax.jit
    def train_call(spectral):
        (raw, normed), updates = module.apply({**variables, "spectral": spectral}, train=True, mutable=["spectral"])
        return raw, normed, updates["spectral"]

    spectral = variables["spectral"]
    first_u = spectral["u"]
    for _ in range(200):
        raw, normed, spectral = train_call(spectral)
    assert not np.allclose(spectral["u"], first_u)
    sigma_true = np.linalg.svd(np.asarray(raw).reshape(18, 4), compute_uv=False)[0]
    sigma_estimate = float(raw[0, 0, 0, 0] / normed[0, 0, 0, 0])
    assert sigma_estimate == pytest.approx(sigma_true, rel=1e-3)
    assert np.linalg.svd(np.asarray(normed).reshape(18, 4), compute_uv=False)[0] == pytest.approx(1.0, abs=1e-3)

    (_, _), updates = module.apply({**variables, "spectral": spectral}, train=False, mutable=["spectral"])
    np.testing.assert_array_equal(updates["spectral"]["u"], spectral["u"])


def test_layer_norm_normalizes_each_example_over_all_positions_and_channels():
    x = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 4, 2)) * 3.0 + 1.0
    module = normalization.LayerNorm()
    variables = module.init(jax.random.PRNGKey(0), x)
    assert variables["params"]["LayerNorm_0"]["scale"].shape == (2,)  # per-channel affine
    y = np.asarray(module.apply(variables, x))
    flat = np.asarray(x).reshape(3, -1)
    expected = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(y.reshape(3, -1), expected, atol=1e-5)


def _config(**overrides):
    values = dict(
        architecture="sndcgan", loss="ns", normalization="spectral", penalty="gp", z_dim=8, width_multiplier=1 / 16,
        image_size=8, weight_clip=0.01, began_gamma=0.5, began_k_learning_rate=0.001, resnet_d_shortcut="conv",
        resnet_d_cin=False, resnet_d_opt=False, resnet_d_pooling="mean", resnet_tanh=False, generator_bn_epsilon=None,
    )
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_generator_batch_norm_updates_in_training_not_in_evaluation():
    gan = models.build(_config(), (8, 8, 1))
    g_vars, _ = gan.init(jax.random.PRNGKey(0))
    z = jax.random.uniform(jax.random.PRNGKey(1), (4, 8), minval=-1, maxval=1)
    images, updates = gan.generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
    before = jax.tree_util.tree_leaves(g_vars["batch_stats"])
    after = jax.tree_util.tree_leaves(updates["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    _, eval_updates = gan.generator.apply(g_vars, z, train=False, mutable=["batch_stats"])
    for a, b in zip(before, jax.tree_util.tree_leaves(eval_updates["batch_stats"])):
        np.testing.assert_array_equal(a, b)
    assert images.shape == (4, 8, 8, 1)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


@pytest.mark.parametrize("bad, message", [
    (dict(architecture="sndcgan", image_size=20), "multiple of 8"),
    (dict(architecture="resnet19", image_size=48), "power of two"),
    (dict(architecture="resnet_cifar", image_size=8), "power of two"),
    (dict(architecture="sndcgan", resnet_d_cin=True), "resnet_d_cin"),
    (dict(loss="nope"), "unknown loss"),
])
def test_check_rejects_unsupported_with_one_line(bad, message):
    with pytest.raises(ValueError) as error:
        models.check(_config(**bad))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_layers_choose_the_textbook_form_at_tiny_shapes_and_the_rewrites_at_large_ones(monkeypatch):
    # Tiny scale: every SNDCGAN layer is a few M multiply-adds, bound by per-op overhead.
    assert not layers.use_fast_path(64, 4 * 4, 3, 16, 16)
    assert layers.use_fast_path(64, 32 * 32, 3, 3, 32)
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 6, 6, 3))
    modules = (layers.Conv(4, 4, 2), layers.Deconv4x4(4), layers.UpConv3x3(4))
    for module in modules:
        variables = module.init(jax.random.PRNGKey(4), x)
        textbook = module.apply(variables, x)
        monkeypatch.setattr(layers, "FAST_PATH_MIN_MACS", 0)
        rewritten = module.apply(variables, x)
        monkeypatch.undo()
        np.testing.assert_allclose(rewritten, textbook, atol=1e-5, rtol=1e-5)
