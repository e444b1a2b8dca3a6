"""Online Dreamer in Gymnasium vector envs (``dreamer.num_envs``): counters, one replay stream
per env (no sampled sequence mixes two envs), per-env recurrent state, triggers, config."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_training.config import ConfigError, DreamerConfig, load_config
from robot_training.reinforcement_learning import train_dreamer as train_dreamer_module
from robot_training.reinforcement_learning.dreamer import DreamerAgent
from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer, run_cli, train_dreamer
from robot_training.world_models.replay import SequenceReplay
from test_dreamer import tiny_config

torch.set_num_threads(1)


class CountingEnv(gym.Env):
    """Observation ``[offset, t]``: ``offset`` is the seed of the first reset (a SyncVectorEnv
    seeds env ``i`` with ``seed + i``, so every env has its own), ``t`` the steps of the episode.
    Episodes last ``3 + offset % 4`` steps, then terminate (odd offset) or are truncated (even)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.offset, self.t = 0, 0

    @property
    def length(self) -> int:
        return 3 + self.offset % 4

    def observation(self):
        return np.array([self.offset, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.offset = int(seed)
        self.t = 0
        return self.observation(), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        odd = self.offset % 2 == 1
        return self.observation(), float(action[0]), end and odd, end and not odd, {}


class DictCountingEnv(CountingEnv):
    """:class:`CountingEnv` with a dict observation ``{"state": [offset, t]}``."""

    observation_space = gym.spaces.Dict({"state": CountingEnv.observation_space})

    def observation(self):
        return {"state": super().observation()}


def counting_config(num_envs: int, **dreamer):
    """No updates (``train_ratio`` 0) unless asked: these tests look at the collection."""
    return tiny_config(num_envs=num_envs, **{"prefill_steps": 0, "train_ratio": 0, **dreamer})


def assert_streams_kept_apart(batch):
    """Every sampled chunk is one env's steps in order: one offset, ``t`` counting up by one and
    back to 0 exactly where a new episode starts, terminal exactly where an odd env's ends."""
    offset, t = batch["observation"][..., 0], batch["observation"][..., 1]
    assert (offset == offset[:, :1]).all()
    first, after = batch["is_first"][:, 1:], t[:, 1:]
    np.testing.assert_array_equal(after[first], 0)
    np.testing.assert_array_equal(after[~first], t[:, :-1][~first] + 1)
    length = 3 + offset % 4
    np.testing.assert_array_equal(batch["is_terminal"], (t == length) & (offset % 2 == 1))


def test_two_envs_train_online_on_pendulum():
    cfg = tiny_config(num_envs=2, prefill_steps=100, train_ratio=16)
    trainer = train_dreamer(env_factory="Pendulum-v1", num_steps=440, config=cfg)
    assert trainer.env_steps == 440
    assert trainer.episodes == 2  # each env's 200-step episode, at its 200th of 220 steps
    # every env step from the one completing the prefill on earns 16 / (4 × 8) updates
    assert trainer.updates == int((440 - 100 + 1) * 16 / 32)
    replay = trainer.replay
    assert replay.num_streams == 2 and len(replay) == 2 + 440 + 2  # first observations, steps, second episodes
    assert replay.num_episodes == 4
    assert -2000 < trainer.evaluate(num_episodes=1) <= 0


def test_sampled_sequences_never_cross_an_env_boundary():
    trainer = train_dreamer(env_factory=CountingEnv, num_steps=90, config=counting_config(3))
    assert trainer.env_steps == 90 and trainer.updates == 0
    # envs 0, 1, 2 (offsets 0, 1, 2): episodes of 3, 4, 5 steps, 30 steps each
    assert trainer.episodes == 30 // 3 + 30 // 4 + 30 // 5
    batch = trainer.replay.sample(512, 8, np.random.default_rng(0))
    assert_streams_kept_apart(batch)
    assert set(np.unique(batch["observation"][:, 0, 0])) == {0.0, 1.0, 2.0}  # all three streams drawn


def test_replay_streams_wrap_apart_and_sample_every_valid_start():
    replay = SequenceReplay(capacity=3 * 7, num_streams=3)
    env = [CountingEnv() for _ in range(3)]
    observations = np.stack([e.reset(seed=i)[0] for i, e in enumerate(env)])
    replay.add_env_steps(observations, np.zeros((3, 1), np.float32), np.zeros(3), np.ones(3, bool), np.zeros(3, bool))
    for _ in range(20):  # more than a stream holds: each ring keeps its newest 7
        steps = [e.step(np.zeros(1, np.float32)) for e in env]
        ended = np.array([s[2] or s[3] for s in steps])
        replay.add_env_steps(np.stack([s[0] for s in steps]), np.zeros((3, 1), np.float32),
                             np.zeros(3), np.zeros(3, bool), np.array([s[2] for s in steps]))
        for i in np.flatnonzero(ended):
            replay.add_env_steps(env[i].reset()[0][None], np.zeros((1, 1), np.float32), np.zeros(1),
                                 np.ones(1, bool), np.zeros(1, bool), streams=[i])
    assert len(replay) == 21 and replay.max_sequence_length == 7
    batch = replay.sample(2000, 5, np.random.default_rng(1))
    assert_streams_kept_apart(batch)
    starts = {(o, t) for o, t in batch["observation"][:, 0]}
    assert len(starts) == 3 * (7 - 5 + 1)  # every stream's every start, and nothing else
    with pytest.raises(ValueError, match="fewer than one sequence of 8"):
        replay.sample(1, 8, np.random.default_rng(0))


def test_recurrent_state_is_reset_only_for_the_env_whose_episode_ended():
    trainer = DreamerTrainer((2,), 1, counting_config(3), env_factory=CountingEnv)
    calls = []
    policy = trainer.agent.policy

    def recording_policy(carry, observations, deterministic=True):
        action, new_carry = policy(carry, observations, deterministic)
        calls.append((carry, observations.copy(), new_carry))
        return action, new_carry

    trainer.agent.policy = recording_policy
    trainer.train_online(60)
    assert len(calls) == 20 and calls[0][0] is None
    mixed = 0
    for (_, _, previous), (carry, observations, _) in zip(calls, calls[1:]):
        fresh = observations[:, 1] == 0  # t == 0: that env's episode just began
        mixed += bool(fresh.any() and not fresh.all())
        for key, value in carry.items():
            np.testing.assert_array_equal(value[~fresh].numpy(), previous[key][~fresh].numpy())
            assert not value[fresh].any()
        assert previous["deter"][fresh].abs().sum(-1).gt(0).all()  # it was reset, not zero before
    assert mixed > 5


def test_reset_carry_resets_the_given_rows():
    agent = DreamerAgent((2,), 1, tiny_config())
    _, carry = agent.policy(None, np.ones((3, 2), np.float32))
    reset = agent.reset_carry(carry, np.array([False, True, False]))
    for key, value in carry.items():
        assert not reset[key][1].any()
        torch.testing.assert_close(reset[key][[0, 2]], value[[0, 2]], rtol=0, atol=0)


def test_dict_observations_step_in_vector_envs():
    trainer = train_dreamer(env_factory=DictCountingEnv, num_steps=40, config=counting_config(2, train_ratio=64))
    assert trainer.env_steps == 40 and trainer.updates == 40 * 2
    batch = trainer.replay.sample(64, 6, np.random.default_rng(0))
    assert_streams_kept_apart({**batch, "observation": batch["observation"]["state"]})


def test_evaluations_and_checkpoints_fire_when_the_count_passes_their_period(tmp_path, monkeypatch):
    evaluated = []
    monkeypatch.setattr(DreamerTrainer, "evaluate", lambda self, episodes: evaluated.append(self.env_steps) or 0.0)
    cfg = counting_config(3, eval_every=10, train_ratio=32).replace(training={"checkpoint_every": 10})
    trainer = train_dreamer(env_factory=CountingEnv, num_steps=30, config=cfg, checkpoint_dir=tmp_path)
    assert evaluated == [12, 21, 30]  # 3 steps at a time: past 10, 20, 30
    assert sorted(p.name for p in tmp_path.glob("dreamer_*.pt")) == ["dreamer_12.pt", "dreamer_21.pt",
                                                                       "dreamer_30.pt"]
    assert trainer.updates == 30

    resumed = train_dreamer(env_factory=CountingEnv, num_steps=45, config=cfg, resume=tmp_path / "dreamer_21.pt")
    assert resumed.env_steps == 45 and resumed.updates == 21 + 24  # continued from the checkpoint's counts
    assert resumed.replay.num_streams == 3 and len(resumed.replay) > 24  # a new replay, refilled


def test_one_env_keeps_a_single_stream():
    trainer = train_dreamer(env_factory=CountingEnv, num_steps=30, config=counting_config(1, train_ratio=32))
    assert trainer.env_steps == 30 and trainer.updates == 30
    assert trainer.replay.num_streams == 1
    assert len(trainer.replay) == 1 + 30 + 30 // 3  # first observation, steps, a first one per ended episode
    assert_streams_kept_apart(trainer.replay.sample(64, 6, np.random.default_rng(0)))


def test_num_envs_is_a_checked_config_key_that_reaches_the_vector_envs(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="dreamer.num_envs: must be at least 1, got 0"):
        load_config(overrides={"dreamer": {"num_envs": 0}})
    with pytest.raises(ConfigError, match="num_envs"):
        DreamerConfig(num_envs=0)

    made = []
    make_vector_env = train_dreamer_module.make_vector_env
    monkeypatch.setattr(train_dreamer_module, "make_vector_env",
                        lambda env, n: made.append(n) or make_vector_env(env, n))
    path = tmp_path / "run.yaml"
    path.write_text("dreamer:\n  num_envs: 4\n  prefill_steps: 20\n")
    cfg = load_config(path).replace(
        world_model=dict(size="tiny", batch_size=4, sequence_length=8),
        dreamer=dict(imagine_horizon=5, eval_every=0, train_ratio=16),
        training=dict(env="Pendulum-v1", total_timesteps=40, device="cpu", eval_episodes=1, tensorboard=False,
                      progress_bar=False, checkpoint_dir=str(tmp_path), log_dir=str(tmp_path / "runs")))
    assert cfg.dreamer.num_envs == 4
    result = run_cli(cfg)
    assert made == [4] and result["env_steps"] == 40
