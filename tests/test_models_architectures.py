"""Paper-size shapes and parameter counts (jax.eval_shape: no compute) and the ablation
switches of study 5."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models.penalties import weight_kernels


def _config(**overrides):
    values = dict(
        architecture="sndcgan", loss="ns", normalization="spectral", penalty="gp", z_dim=128, width_multiplier=1.0,
        image_size=32, weight_clip=0.01, began_gamma=0.5, began_k_learning_rate=0.001, resnet_d_shortcut="conv",
        resnet_d_cin=False, resnet_d_opt=False, resnet_d_pooling="mean", resnet_tanh=False, generator_bn_epsilon=None,
    )
    values.update(overrides)
    return types.SimpleNamespace(**values)


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _shapes(config, size, batch=2):
    gan = models.build(config, (size, size, 3))
    g_vars, d_vars = jax.eval_shape(gan.init, jax.random.PRNGKey(0))
    images = jax.eval_shape(lambda v, z: gan.generator.apply(v, z, train=False), g_vars,
                            jax.ShapeDtypeStruct((batch, 128), jnp.float32))
    logits = jax.eval_shape(lambda v, x: gan.discriminator.apply(v, x, train=False), d_vars,
                            jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32))
    return gan, g_vars, d_vars, images, logits


# G: block(i, o) = BN 2i + conv1 (9 i o + o) + BN 2o + conv2 (9 o o + o) + shortcut (9 i o + o);
# D (SN, no norm params): block(i, o) = conv1 (9 i o + o) + conv2 (9 o o + o) + shortcut (9 i o + o).
PAPER = [
    # SNDCGAN 32: G = linear 128*4*4*512 + 8192 (1,056,768) + BN0 2*8192 + deconvs 16*512*256+256,
    # 16*256*128+128, 16*128*64+64 + BN 2*(256+128+64) + conv 9*64*3+3 = 3,828,739.
    # D = convs 9*3*64+64, 16*64*128+128, 9*128*128+128, 16*128*256+256, 9*256*256+256,
    # 16*256*512+512, 9*512*512+512 (5,852,672) + linear 4*4*512+1 = 5,860,865.
    ("sndcgan", 32, 3_828_739, 5_860_865, 8),
    # SNDCGAN 128: G linear and BN0 grow to 16*16*512 features: 128*131072+131072 + 2*131072 + rest
    # = 19,926,019; D linear 16*16*512+1 = 131,073 -> 5,983,745.
    ("sndcgan", 128, 19_926_019, 5_983_745, 8),
    # ResNet19: G = linear 128*4*4*512+8192 + blocks (512,512),(512,256),(256,256),(256,128),(128,64)
    # + BN 2*64 + conv 9*64*3+3 = 13,786,115. D = blocks (3,64),(64,128),(128,256),(256,256),
    # (256,512),(512,512) + linear 512+1 = 15,086,529; 6*3 convs + 1 linear = 19 weight layers.
    ("resnet19", 128, 13_786_115, 15_086_529, 19),
    # ResNet-CIFAR: G = linear 128*4*4*256+4096 + 3 blocks (256,256) + BN 2*256 + conv 9*256*3+3 =
    # 5,849,603. D = blocks (3,128),(128,128)x3 + linear 128+1 = 1,483,137; 13 weight layers.
    ("resnet_cifar", 32, 5_849_603, 1_483_137, 13),
]


@pytest.mark.parametrize("architecture, size, g_count, d_count, layers", PAPER)
def test_paper_size_shapes_and_parameter_counts(architecture, size, g_count, d_count, layers):
    gan, g_vars, d_vars, images, logits = _shapes(_config(architecture=architecture, image_size=size), size)
    assert images.shape == (2, size, size, 3) and logits.shape == (2,)
    assert _count(g_vars["params"]) == g_count
    assert _count(d_vars["params"]) == d_count
    assert len(weight_kernels(d_vars["params"])) == layers
    assert len(jax.tree_util.tree_leaves(d_vars["spectral"])) == layers  # one u per SN layer
    assert set(g_vars) == {"params", "batch_stats"}


def test_width_multiplier_scales_every_channel_count():
    _, g_vars, d_vars, _, _ = _shapes(_config(width_multiplier=0.5), 32)
    assert g_vars["params"]["deconv1"]["kernel"].shape == (4, 4, 256, 128)
    assert d_vars["params"]["conv6"]["kernel"].shape == (3, 3, 256, 256)
    assert d_vars["params"]["linear"]["kernel"].shape == (4 * 4 * 256, 1)


def _cifar_d(**switches):
    _, g_vars, d_vars, images, logits = _shapes(_config(architecture="resnet_cifar", **switches), 32)
    return d_vars["params"]


def test_identity_shortcut_removes_the_shortcut_conv_where_channels_match():
    default, identity = _cifar_d(), _cifar_d(resnet_d_shortcut="identity")
    assert default["block1_shortcut"]["kernel"].shape == (3, 3, 128, 128)
    assert "block1_shortcut" not in identity and "block3_shortcut" not in identity
    # 3 -> 128 channels in B0: a 1x1 conv maps the channels
    assert identity["block0_shortcut"]["kernel"].shape == (1, 1, 3, 128)


def test_cin_and_opt_change_the_first_block():
    assert _cifar_d()["block0_conv1"]["kernel"].shape == (3, 3, 3, 128)
    cin = _cifar_d(resnet_d_cin=True)
    assert cin["block0_conv1"]["kernel"].shape == (3, 3, 3, 3)  # hidden conv outputs c_in
    assert cin["block1_conv1"]["kernel"].shape == (3, 3, 128, 128)
    cin_opt = _cifar_d(resnet_d_cin=True, resnet_d_opt=True)
    assert cin_opt["block0_conv1"]["kernel"].shape == (3, 3, 3, 128)  # OPT: c_out inside
    assert cin_opt["block0_shortcut"]["kernel"].shape == (1, 1, 3, 128)  # avgpool -> conv1x1


def test_sum_pooling_scales_the_head_by_the_number_of_positions():
    # (The default block 0 also feeds the raw image to its learned shortcut conv, so
    # "ReLU on the image" cannot be observed at D's output; OPT's first block is
    # checked structurally in test_cin_and_opt_change_the_first_block.)
    gan_default = models.build(_config(architecture="resnet_cifar", image_size=16, width_multiplier=1 / 16,
                                       normalization="none"), (16, 16, 3))
    gan_sum = models.build(_config(architecture="resnet_cifar", image_size=16, width_multiplier=1 / 16,
                                   normalization="none", resnet_d_pooling="sum"), (16, 16, 3))
    _, d_default = gan_default.init(jax.random.PRNGKey(0))
    # SUM = MEAN * positions (final map 8x8 at 16x16 input) for the same weights, bias 0
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))
    np.testing.assert_allclose(gan_sum.discriminator.apply(d_default, x),
                               64 * gan_default.discriminator.apply(d_default, x), rtol=1e-4)


def test_tanh_output_and_generator_epsilon_switches():
    base = dict(architecture="resnet_cifar", image_size=16, width_multiplier=1 / 16, z_dim=8)
    tan = models.build(_config(resnet_tanh=True, **base), (16, 16, 3))
    assert tan.data_range == (-1.0, 1.0) and tan.penalty.__class__.__name__ == "GradientPenalty"
    g_vars, _ = tan.init(jax.random.PRNGKey(0))
    z = jnp.ones((2, 8)) * 50.0
    assert float(tan.generator.apply(g_vars, z).min()) < 0.0  # tanh reaches below 0
    default = models.build(_config(**base), (16, 16, 3))
    assert default.data_range == (0.0, 1.0)
    assert float(default.generator.apply(g_vars, z).min()) >= 0.0  # sigmoid
    assert default.generator.bn_epsilon == 1e-5
    assert models.build(_config(generator_bn_epsilon=2e-5, **base), (16, 16, 3)).generator.bn_epsilon == 2e-5
    assert models.build(_config(z_dim=8, width_multiplier=1 / 16, image_size=8), (8, 8, 3)).generator.bn_epsilon == 2e-5


def test_began_discriminator_returns_nonnegative_reconstruction_errors():
    gan = models.build(_config(loss="began", image_size=8, width_multiplier=1 / 16, z_dim=8), (8, 8, 1))
    g_vars, d_vars = gan.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 1))
    errors = gan.discriminator.apply(d_vars, x)
    assert errors.shape == (3,) and bool(jnp.all(errors >= 0))
    assert gan.loss.init_state()["k"] == 0.0
