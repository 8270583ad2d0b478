"""Conditional GANs: class-conditional BN, the projection D, ACGAN's and InfoGAN's
loss terms against hand computations, labels through the batch stream, config validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import conditional
from study.trial.config import ID_OMITS_AT_DEFAULT, ConfigError, TrialConfig


def _gan(**fields):
    config = TrialConfig.from_dict({"scale": "tiny", "dataset": "digits", **fields})
    return models.build(config, (8, 8, 1), num_classes=10)


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_projection_discriminator_is_psi_of_phi_plus_the_labels_embedding_times_phi():
    gan = _gan(conditioning="projection", normalization="none")
    _, d_vars = gan.init(jax.random.PRNGKey(0))
    # N(0, 0.02) kernels through 7 convolutions leave phi ~ 1e-6: scale every conv kernel by 6
    # (D is positively homogeneous in them) and draw a unit-scale embedding, so both terms are O(1).
    params = {name: ({**layer, "kernel": 6.0 * layer["kernel"]} if name.startswith("conv") else layer)
              for name, layer in d_vars["params"].items()}
    params["embedding"] = {"embedding": jax.random.normal(jax.random.PRNGKey(1), params["embedding"]["embedding"].shape)}
    x = jax.random.uniform(jax.random.PRNGKey(2), (4, 8, 8, 1))
    labels = jnp.array([0, 3, 3, 9], jnp.int32)
    out, inter = gan.discriminator.apply({"params": params}, x, labels=labels, train=False, mutable=["intermediates"])
    phi = np.asarray(inter["intermediates"]["features"][0], np.float64)
    assert 1e-2 < np.abs(phi).max() < 1e2
    w, b = np.asarray(params["linear"]["kernel"], np.float64), np.asarray(params["linear"]["bias"], np.float64)
    table = np.asarray(params["embedding"]["embedding"], np.float64)
    by_hand = (phi @ w + b)[:, 0] + np.sum(table[np.asarray(labels)] * phi, axis=1)
    np.testing.assert_allclose(np.asarray(out), by_hand, rtol=1e-5, atol=1e-5)
    # Same images, other labels: other outputs (by exactly <e_y' - e_y, phi>).
    other = jnp.array([1, 2, 4, 8], jnp.int32)
    moved = gan.discriminator.apply({"params": params}, x, labels=other, train=False)
    assert np.all(np.abs(np.asarray(moved) - np.asarray(out)) > 1e-4)
    np.testing.assert_allclose(np.asarray(moved - out), np.sum((table[np.asarray(other)] - table[np.asarray(labels)]) * phi, 1),
                               rtol=1e-4, atol=1e-5)


def test_spectral_projection_discriminator_normalises_its_embedding():
    gan = _gan(conditioning="projection", normalization="spectral")
    _, d_vars = gan.init(jax.random.PRNGKey(0))
    assert d_vars["spectral"]["embedding"]["u"].shape == (10, 1)  # power iteration on V [K, F]
    table = np.asarray(d_vars["params"]["embedding"]["embedding"])
    x = jnp.zeros((2, 8, 8, 1))
    # Scaling V by 7 leaves V / sigma(V), hence D, unchanged (eval mode: the stored u).
    scaled = {**d_vars, "params": {**d_vars["params"], "embedding": {"embedding": 7.0 * table}}}
    a = gan.discriminator.apply(d_vars, x, labels=jnp.array([1, 2]), train=False)
    b = gan.discriminator.apply(scaled, x, labels=jnp.array([1, 2]), train=False)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_conditional_batch_norm_applies_the_labels_gamma_and_beta():
    module = conditional.ConditionalBatchNorm(num_classes=3, use_running_average=False, momentum=0.9, epsilon=1e-5)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2)) * 3.0 + 1.0
    labels = jnp.array([0, 2, 2, 1])
    variables = module.init(jax.random.PRNGKey(1), x, labels)
    gamma = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]], np.float32)
    beta = np.array([[0.0, 1.0], [-2.0, 0.5], [3.0, -3.0]], np.float32)
    variables = {**variables, "params": {"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)}}
    out, updates = module.apply(variables, x, labels, mutable=["batch_stats"])
    xs = np.asarray(x, np.float64)
    normalised = (xs - xs.mean(0)) / np.sqrt(xs.var(0) + 1e-5)
    by_hand = normalised * gamma[np.asarray(labels)] + beta[np.asarray(labels)]
    np.testing.assert_allclose(np.asarray(out), by_hand, rtol=1e-5, atol=1e-5)
    # The moving averages are the unconditional BN's (one per channel, not per class).
    np.testing.assert_allclose(np.asarray(updates["batch_stats"]["norm"]["mean"]), 0.1 * xs.mean(0), rtol=1e-5)


def test_conditional_generator_draws_each_label_with_its_own_batch_norm_affine():
    gan = _gan(conditioning="acgan")
    g_vars, _ = gan.init(jax.random.PRNGKey(0))
    assert g_vars["params"]["bn1"]["gamma"].shape[0] == 10 and "norm" in g_vars["batch_stats"]["bn1"]
    beta = g_vars["params"]["bn3"]["beta"]
    g_vars = {**g_vars, "params": {**g_vars["params"], "bn3": {**g_vars["params"]["bn3"],
                                                               "beta": beta.at[5].set(3.0)}}}
    z = jnp.tile(jax.random.uniform(jax.random.PRNGKey(1), (1, gan.z_dim), minval=-1, maxval=1), (3, 1))
    images = np.asarray(gan.generator.apply(g_vars, z, labels=jnp.array([4, 5, 6]), train=False))
    # Same z: classes 4 and 6 share their (initial) affine, class 5's beta differs.
    np.testing.assert_array_equal(images[0], images[2])
    assert np.abs(images[1] - images[0]).max() > 1e-3


def test_acgan_class_losses_equal_the_cross_entropies_by_hand():
    real_logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    fake_logits = np.array([[0.0, 1.0, 0.0], [-2.0, 4.0, 1.0]], np.float32)
    real_y, fake_y = np.array([0, 1]), np.array([2, 1])
    ce = lambda logits, y: -np.mean(_log_softmax(logits)[np.arange(len(y)), y])  # noqa: E731
    spec = conditional.ConditionSpec(conditioning="acgan", num_classes=3, class_weight=0.5)
    d_term = spec.discriminator_loss(jnp.asarray(real_logits), jnp.asarray(real_y), jnp.asarray(fake_logits),
                                     {"labels": jnp.asarray(fake_y)})
    g_term = spec.generator_loss(jnp.asarray(fake_logits), {"labels": jnp.asarray(fake_y)})
    np.testing.assert_allclose(float(d_term), 0.5 * (ce(real_logits, real_y) + ce(fake_logits, fake_y)), rtol=1e-6)
    np.testing.assert_allclose(float(g_term), 0.5 * ce(fake_logits, fake_y), rtol=1e-6)
    # ce([2, 0, -1], 0) by hand: -log(e^2 / (e^2 + 1 + e^-1))
    np.testing.assert_allclose(float(conditional.cross_entropy(jnp.asarray(real_logits[:1]), jnp.array([0]))),
                               -np.log(np.e**2 / (np.e**2 + 1 + np.e**-1)), rtol=1e-6)


def test_infogan_mutual_information_term_by_hand():
    # K = 2 categories, n = 2 continuous codes: q = [logit_0, logit_1, mu_0, mu_1]
    q = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 2.0, -0.2, 0.9]], np.float32)
    codes = {"categorical": np.array([0, 0]), "continuous": np.array([[0.5, 1.0], [0.2, -0.1]], np.float32)}
    cat = -np.mean([np.log(np.e / (np.e + np.e**-1)), np.log(1 / (1 + np.e**2))])
    gauss = np.mean([0.5 * (0.0**2 + 1.0**2), 0.5 * (0.4**2 + 1.0**2)])
    spec = conditional.ConditionSpec(categories=2, continuous=2, info_weight=2.0)
    jcodes = {k: jnp.asarray(v) for k, v in codes.items()}
    np.testing.assert_allclose(float(conditional.infogan_loss(jnp.asarray(q), jcodes, 2)), cat + gauss, rtol=1e-6)
    # Added (weighted) to G's loss and to D/Q's: the same term on the fake batch.
    np.testing.assert_allclose(float(spec.generator_loss(jnp.asarray(q), jcodes)), 2.0 * (cat + gauss), rtol=1e-6)
    np.testing.assert_allclose(float(spec.discriminator_loss(None, None, jnp.asarray(q), jcodes)), 2.0 * (cat + gauss),
                               rtol=1e-6)
    # G's input is [z, one_hot(c_cat), c_cont]; the Q head shares D's body.
    z_in, kwargs = spec.generator_inputs(jnp.zeros((2, 3)), jcodes)
    np.testing.assert_array_equal(np.asarray(z_in), np.array([[0, 0, 0, 1, 0, 0.5, 1.0], [0, 0, 0, 1, 0, 0.2, -0.1]], np.float32))
    assert kwargs == {}
    gan = _gan(infogan_categories=2, infogan_continuous=2)
    g_vars, d_vars = jax.eval_shape(gan.init, jax.random.PRNGKey(0))  # shapes only: no compile
    assert g_vars["params"]["linear"]["kernel"].shape[0] == gan.z_dim + 4
    assert d_vars["params"]["aux"]["kernel"].shape[1] == 4 and "embedding" not in d_vars["params"]


def test_labelled_stream_pairs_each_image_with_its_label_and_resumes_exactly():
    from study.data.pipeline import BatchStream, Prefetcher

    count = 23
    images = np.arange(count, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = (np.arange(count) * 7 % 10).astype(np.int32)
    stream = BatchStream(images, 4, seed=5, labels=labels)
    batches, batch_labels = stream.next(9)  # crosses epochs
    assert batches.shape == (9, 4, 2, 2, 1) and batch_labels.shape == (9, 4) and batch_labels.dtype == np.int32
    np.testing.assert_array_equal(batch_labels, labels[batches[:, :, 0, 0, 0]])
    resumed_images, resumed_labels = BatchStream(images, 4, seed=5, start_batch=6, labels=labels).next(3)
    np.testing.assert_array_equal(resumed_images, batches[6:])
    np.testing.assert_array_equal(resumed_labels, batch_labels[6:])
    # The unlabelled stream is unchanged: the same images, no labels.
    np.testing.assert_array_equal(BatchStream(images, 4, seed=5).next(9), batches)
    with Prefetcher(BatchStream(images, 4, seed=5, labels=labels), 3) as prefetch:
        for group in range(3):
            got_images, got_labels = prefetch.next()
            np.testing.assert_array_equal(np.asarray(got_images), batches[3 * group: 3 * group + 3])
            np.testing.assert_array_equal(np.asarray(got_labels), batch_labels[3 * group: 3 * group + 3])


@pytest.mark.parametrize("values, fragment", [
    ({"conditioning": "classes"}, "conditioning='classes' is not allowed; choose one of: none, projection, acgan"),
    ({"conditioning": "projection", "dataset": "celebahq128"},
     "conditioning='projection' needs class labels, and dataset 'celebahq128' has none; labelled datasets: "),
    ({"conditioning": "acgan", "loss": "began"}, "loss='began' is not allowed with conditioning='acgan'"),
    ({"infogan_continuous": 2, "loss": "began_paper"}, "loss='began_paper' is not allowed with InfoGAN codes"),
    ({"conditioning": "projection", "infogan_categories": 10}, "conditioning='projection' is not allowed with InfoGAN"),
    ({"infogan_categories": 1}, "infogan_categories=1 is not allowed; use 0"),
    ({"infogan_continuous": -1}, "infogan_continuous=-1 is out of range"),
    ({"acgan_class_weight": -1.0}, "acgan_class_weight=-1.0 is out of range"),
])
def test_bad_conditional_configs_raise_one_clear_line(values, fragment):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_conditional_fields_keep_unconditional_trial_ids():
    new = ("conditioning", "acgan_class_weight", "infogan_categories", "infogan_continuous", "infogan_weight")
    assert set(new) <= set(ID_OMITS_AT_DEFAULT)
    base = TrialConfig()
    assert TrialConfig(conditioning="projection").trial_id != base.trial_id
    assert TrialConfig(infogan_continuous=2).trial_id != base.trial_id
    assert TrialConfig(conditioning="acgan", dataset="cifar10").conditioning == "acgan"  # labelled once prepared
