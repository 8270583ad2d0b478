"""TrialConfig: the public schema, its resolution from scale presets, and its errors."""
import dataclasses

import pytest

from study.trial.config import SCALES, ConfigError, TrialConfig


def test_defaults_resolve_from_the_tiny_scale():
    config = TrialConfig()
    preset = SCALES["tiny"]
    assert config.train_steps == preset.train_steps
    assert config.eval_every == preset.eval_every
    assert config.image_size == preset.image_size
    assert config.width_multiplier == preset.width_multiplier
    assert config.eval_samples == 300  # the digits test split holds 300 images


def test_round_trip_and_stable_id():
    config = TrialConfig.from_dict({"learning_rate": 1e-3, "penalty_weight": 1, "discriminator_steps": 5.0})
    assert isinstance(config.penalty_weight, float) and isinstance(config.discriminator_steps, int)
    again = TrialConfig.from_dict(config.to_dict())
    assert again == config and again.trial_id == config.trial_id
    assert config.replace(seed=1).trial_id != config.trial_id


def test_paper_scale_uses_the_papers_lengths():
    config = TrialConfig(scale="paper", dataset="digits")
    assert config.train_steps == 200_000 and config.eval_every == 20_000 and config.image_size == 8


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"lossx": "ns"}, "unknown field 'lossx'; allowed fields: dataset"),
        ({"loss": "nss"}, "loss='nss' is not allowed; choose one of:"),
        ({"dataset": "imagenet"}, "dataset='imagenet' is not allowed; choose one of: cifar10, celebahq128, lsun_bedroom, digits"),
        ({"scale": "huge"}, "scale='huge' is not allowed; choose one of: tiny, small, paper"),
        ({"learning_rate": 0.0}, "learning_rate=0.0 is out of range; allowed: (0, 1]"),
        ({"beta2": 1.5}, "beta2=1.5 is out of range; allowed: [0, 1]"),
        ({"discriminator_steps": 2.5}, "discriminator_steps=2.5 is not allowed; expected an integer"),
        ({"discriminator_steps": 0}, "discriminator_steps=0 is out of range"),
        ({"train_steps": 301, "discriminator_steps": 5}, "train_steps=301 is not allowed with discriminator_steps=5"),
        ({"eval_samples": 5000}, "eval_samples=5000 is larger than the digits test split (300 images)"),
        ({"penalty_weight": "ten"}, "penalty_weight='ten' is not allowed; expected a finite number"),
        ({"adam_form": "keras"}, "adam_form='keras' is not allowed; choose one of: tf, optax"),
    ],
)
def test_bad_values_raise_one_clear_line(values, fragment):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(values)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message


def test_command_line_strings_are_parsed_by_field_type():
    config = TrialConfig.from_dict(
        {"learning_rate": "1e-3", "discriminator_steps": "5", "resnet_tanh": "false", "discriminator_learning_rate": "none",
         "train_steps": "100", "eval_every": "50"},
        coerce_strings=True,
    )
    assert config.learning_rate == 1e-3 and config.discriminator_steps == 5 and config.resnet_tanh is False
    assert config.discriminator_learning_rate is None and config.effective_discriminator_learning_rate == 1e-3
    with pytest.raises(ConfigError, match="resnet_tanh='maybe' is not allowed; expected true or false"):
        TrialConfig.from_dict({"resnet_tanh": "maybe"}, coerce_strings=True)


def test_trial_ids_are_pinned_so_a_new_field_does_not_rename_existing_trials():
    """A resumed or merged study finds its trials by id. These ids were published with studies
    run on 2026-12-01 (adam_form included); a field added since must be listed in
    ID_OMITS_AT_DEFAULT (left out of the id at its default) or every existing trial is renamed."""
    from study.trial import config as config_module

    assert TrialConfig().trial_id == "43ad82a20732"
    assert TrialConfig(loss="wgan", normalization="none", penalty="none", scale="small").trial_id == "fadf5c8e5f54"
    for name in config_module.ID_OMITS_AT_DEFAULT:
        field = next(f for f in dataclasses.fields(TrialConfig) if f.name == name)
        assert field.default is not dataclasses.MISSING, name
