"""Dreamer: imagination shapes, λ-returns, the carry, reproducibility, files, offline/online runs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.networks.encoders import ObservationShapeError
from robot_training.reinforcement_learning.behavior import lambda_returns
from robot_training.reinforcement_learning.dreamer import DreamerAgent
from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer, run_cli, train_dreamer
from test_world_model import linear_system

torch.set_num_threads(1)


def tiny_config(**dreamer) -> Config:
    d = dict(imagine_horizon=5, prefill_steps=50, train_ratio=64, eval_every=0, actor_lr=1e-3, critic_lr=1e-3)
    d.update(dreamer)
    return Config().replace(world_model=dict(size="tiny", batch_size=4, sequence_length=8, learning_rate=3e-3),
                            dreamer=d, training=dict(device="cpu", seed=0, eval_episodes=1, tensorboard=False,
                                                     progress_bar=False))


def test_lambda_returns_match_the_recursion():
    reward = torch.tensor([[1.0], [2.0], [3.0]])
    discount = torch.full((3, 1), 0.5)
    value = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    lam = 0.8
    r3 = 40.0
    r2 = 3 + 0.5 * (0.2 * 40 + 0.8 * r3)
    r1 = 2 + 0.5 * (0.2 * 30 + 0.8 * r2)
    r0 = 1 + 0.5 * (0.2 * 20 + 0.8 * r1)
    assert torch.allclose(lambda_returns(reward, discount, value, lam).squeeze(1), torch.tensor([r0, r1, r2]))


@pytest.mark.parametrize("gradient", ["dynamics", "reinforce"])
def test_imagination_shapes_and_one_update(gradient):
    cfg = tiny_config(actor_gradient=gradient)
    trainer = DreamerTrainer((3,), 2, cfg)
    trainer.add_trajectories(linear_system(num_episodes=3, length=12))
    agent = trainer.agent
    rssm = agent.world_model.rssm
    start = rssm.initial_state(6)
    states, actions, entropy, log_prob = agent.behavior.imagine(agent.world_model, start, 5, gradient == "dynamics")
    assert states["deter"].shape == (6, 6, rssm.state_dim)  # (H + 1, N, state_dim)
    assert states["stoch"].shape == (6, 6, rssm.stoch_size)
    assert actions.shape == (5, 6, 2) and actions.abs().max() <= 1
    assert entropy.shape == log_prob.shape == (5, 6)

    actor_before = [p.detach().clone() for p in agent.behavior.actor.parameters()]
    slow_before = [p.detach().clone() for p in agent.behavior.slow_critic.parameters()]
    metrics = trainer.update()
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, agent.behavior.actor.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(slow_before, agent.behavior.slow_critic.parameters()))


def test_act_carries_state_and_is_reproducible(tmp_path):
    trainer = train_dreamer(linear_system(num_episodes=4, length=16), num_steps=10, config=tiny_config())
    agent = trainer.agent
    observations = [np.full(3, v, np.float32) for v in (0.5, -1.0, 2.0, 0.1)]

    agent.reset()
    first = [agent.act(o) for o in observations]
    agent.reset()
    again = [agent.act(o) for o in observations]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))  # deterministic after reset
    # the state is carried: the same observation after a history acts differently than fresh
    agent.reset()
    fresh = agent.act(observations[-1])
    assert not np.allclose(fresh, first[-1])

    def sampled(seed):
        torch.manual_seed(seed)
        agent.reset()
        return np.stack([agent.act(o, deterministic=False) for o in observations])

    np.testing.assert_array_equal(sampled(3), sampled(3))
    assert not np.allclose(sampled(3), sampled(4))

    # pure policy: a batch of two carries equals two separate robots
    carry = agent.initial_carry(2)
    a_one, c_one = agent.policy(None, observations[0])
    a_two, c_two = agent.policy(None, observations[1])
    batch_action, batch_carry = agent.policy(carry, np.stack(observations[:2]))
    np.testing.assert_allclose(batch_action, np.stack([a_one, a_two]), atol=1e-5)
    next_batch, _ = agent.policy(batch_carry, np.stack(observations[2:]))
    next_one, _ = agent.policy(c_one, observations[2])
    np.testing.assert_allclose(next_batch[0], next_one, atol=1e-5)

    # save -> load -> identical actions
    path = agent.save(tmp_path / "agent.pt")
    other = DreamerAgent((3,), 2, tiny_config())
    other.load(path)
    other.reset()
    np.testing.assert_array_equal(np.stack([other.act(o) for o in observations]), np.stack(first))
    rebuilt = DreamerAgent.from_checkpoint(path)
    np.testing.assert_array_equal(rebuilt.act(observations[0]), first[0])


def test_offline_dreamer_end_to_end_with_cli_and_resume(tmp_path):
    data = linear_system(num_episodes=6, length=20)
    cfg = tiny_config().replace(training={"checkpoint_dir": str(tmp_path), "log_dir": str(tmp_path / "runs"),
                                          "tensorboard": True, "env": "synthetic", "total_timesteps": 12, "seed": 1,
                                          "progress_bar": False})
    result = run_cli(cfg, data)
    path = tmp_path / "reinforcement_learning" / "checkpoints" / "dreamer" / "dreamer_final.pt"
    assert result["checkpoint"] == str(path) and path.is_file()
    assert result["updates"] == 12 and np.isfinite(result["world_model_loss"])
    assert Path(result["log_dir"]).name.startswith("synthetic__dreamer__1__")  # training.env, training.seed

    resumed = run_cli(cfg.replace(training={"total_timesteps": 20}), data, resume=str(path))
    assert resumed["updates"] == 20  # continued from 12 towards the same total

    agent = DreamerAgent.from_checkpoint(path)
    low = np.min([t.actions.min(0) for t in data], 0)
    high = np.max([t.actions.max(0) for t in data], 0)
    action = agent.act(data[0].observations[0])
    assert action.shape == (2,) and np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)


def test_online_dreamer_runs_on_pendulum():
    trainer = train_dreamer(env_factory="Pendulum-v1", num_steps=120, config=tiny_config(prefill_steps=60))
    assert trainer.env_steps == 120
    # from the step that completes the prefill on: train_ratio / (batch × length) = 2 updates per step
    assert trainer.updates == (120 - 60 + 1) * 64 // 32
    assert len(trainer.replay) == 121  # first observation + 120 steps (no episode ended)
    value = trainer.evaluate(num_episodes=1)
    assert -2000 < value <= 0


def test_bad_observation_shapes_are_clear_errors():
    data = linear_system(num_episodes=2, length=10)
    with pytest.raises(ObservationShapeError, match=r"observation_shape=\(4,\)"):
        train_dreamer(data, observation_shape=(4,), num_steps=1, config=tiny_config())
    agent = DreamerAgent((3,), 2, tiny_config())
    with pytest.raises(ObservationShapeError, match=r"has shape \(5,\), expected \(3,\)"):
        agent.act(np.zeros(5, np.float32))
    with pytest.raises(ObservationShapeError, match="power of two"):
        DreamerAgent((60, 60, 3), 2, tiny_config())


def test_agent_and_world_model_remember_the_interface_of_their_data(tmp_path):
    """Trained from bag data (trajectories with an interface fingerprint), the checkpoints keep
    it, so the policy server can refuse a robot described differently."""
    from robot_training.checkpoint import load_checkpoint
    from robot_training.world_models.train_world_model import WorldModelTrainer

    data = linear_system(num_episodes=4, length=20)
    for t in data:
        t.interface_fingerprint = "a" * 64
    trainer = train_dreamer(trajectories=data, num_steps=2, config=tiny_config(), seed=0)
    trainer.agent.save(tmp_path / "agent.pt")
    trainer.save_checkpoint(tmp_path / "trainer.pt")
    for name in ("agent.pt", "trainer.pt"):
        assert load_checkpoint(tmp_path / name)["interface_fingerprint"] == "a" * 64
        assert DreamerAgent.from_checkpoint(tmp_path / name).interface_fingerprint == "a" * 64

    wm = WorldModelTrainer(data[0].observation_shape, data[0].action_dim, tiny_config())
    wm.set_data(data)
    wm.save_checkpoint(tmp_path / "wm.pt")
    assert load_checkpoint(tmp_path / "wm.pt")["interface_fingerprint"] == "a" * 64
    data[1].interface_fingerprint = "b" * 64
    with pytest.raises(ValueError, match="different interface descriptions"):
        wm.set_data(data)
