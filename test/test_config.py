"""Configuration: defaults, the shipped YAML, overrides and errors that name the key."""

from pathlib import Path

import pytest

from robot_training.config import Config, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_default_yaml_matches_dataclass_defaults():
    assert load_config(REPO / "config" / "default_config.yaml") == Config()


def test_seed_keys_present_with_seed_values():
    cfg = Config()
    assert (cfg.world_model.state_dim, cfg.world_model.hidden_dim) == (256, 256)
    # the world model's optimiser keys learn sooner on CPUs; the seed's values are a preset
    seed = load_config(preset="seed")
    assert (seed.world_model.learning_rate, seed.world_model.batch_size, seed.world_model.sequence_length) == \
        (0.0001, 32, 50)
    assert (cfg.world_model.learning_rate, cfg.world_model.batch_size, cfg.world_model.sequence_length) == \
        (0.0006, 16, 32)
    assert (cfg.policy.ppo_clip, cfg.policy.gamma, cfg.policy.learning_rate) == (0.2, 0.99, 0.0003)
    assert (cfg.dreamer.imagine_horizon, cfg.dreamer.discount, cfg.dreamer.kl_balance) == (15, 0.99, 0.8)
    assert (cfg.training.num_iterations, cfg.training.steps_per_iteration) == (1000, 2048)


def test_user_file_overrides_only_what_it_sets(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("policy:\n  gamma: 0.95\ndreamer:\n  lambda: 0.9\n")
    cfg = load_config(f)
    assert cfg.policy.gamma == 0.95
    assert cfg.dreamer.lambda_ == 0.9
    assert cfg.policy.ppo_clip == Config().policy.ppo_clip
    assert cfg.sac == Config().sac


@pytest.mark.parametrize(
    "text, needle",
    [
        ("policy:\n  gama: 0.9\n", "unknown key 'policy.gama'"),
        ("polcy:\n  gamma: 0.9\n", "unknown key 'polcy'"),
        ("policy:\n  gamma: high\n", "policy.gamma: expected float"),
        ("training:\n  seed: 1.5\n", "training.seed: expected int"),
        ("sac:\n  autotune: 1\n", "sac.autotune: expected bool"),
        ("policy: 3\n", "policy: expected a mapping"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_bad_keys_are_named_with_the_file(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert needle in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("policy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_round_trip_through_plain_dict():
    cfg = load_config(overrides={"training": {"total_timesteps": 123, "env": "Pendulum-v1"}})
    assert config_from_dict(cfg.to_dict()) == cfg


def test_named_presets_load_and_unknown_names_are_refused():
    v3 = load_config(preset="dreamerv3")
    assert (v3.world_model.learning_rate, v3.dreamer.actor_lr, v3.world_model.sequence_length) == (1e-4, 3e-5, 64)
    assert v3.dreamer.discount == 0.997 and v3.world_model.size == "dreamerv3_s"
    with pytest.raises(ConfigError, match="unknown preset 'dremer'.*dreamerv3"):
        load_config(preset="dremer")
