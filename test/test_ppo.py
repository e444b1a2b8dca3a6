"""PPO: learning on CartPole, truncation bootstrapping, save/load, checkpoint state."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.utils.data_collection import evaluate_policy
from robot_training.policies.ppo import PPO
from robot_training.policies.train_policy import PolicyTrainer, train_policy

torch.set_num_threads(1)


def evaluate(policy, env_id, episodes=3, seed=1000):
    return evaluate_policy(policy, env_id, episodes, seed)


def small_config(tmp_path, **policy):
    base = dict(hidden_dim=64, num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98,
                gae_lambda=0.8, learning_rate=1e-3, norm_obs=False)
    base.update(policy)
    return Config().replace(policy=base, training=dict(log_dir=str(tmp_path / "runs"), checkpoint_every=0,
                                                       progress_bar=False))


def test_ppo_improves_cartpole(tmp_path):
    torch.manual_seed(0)  # network initialisation: independent of the tests run before
    cfg = small_config(tmp_path)
    env = gym.make("CartPole-v1")
    algo = PPO(env.observation_space, env.action_space, cfg, env="CartPole-v1", seed=0)
    before = evaluate(algo, "CartPole-v1")
    algo.learn(20_000)
    after = evaluate(algo, "CartPole-v1")
    assert algo.num_timesteps >= 20_000
    assert after > max(2 * before, 150), (before, after)


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step, a constant observation, cut by a 10-step time limit: only
    bootstrapping the truncation lets the value approach 1 / (1 - gamma)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


def test_ppo_bootstraps_truncated_episodes(tmp_path):
    factory = lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), max_episode_steps=10)  # noqa: E731
    cfg = small_config(tmp_path, gamma=0.9, gae_lambda=0.95, anneal_lr=False, num_envs=2, num_steps=16,
                       update_epochs=5)
    algo = PPO(ConstantRewardEnv.observation_space, ConstantRewardEnv.action_space, cfg, env=factory, seed=0)
    algo.learn(3_000)
    with torch.no_grad():
        v = float(algo.model.value(algo.model.normalize(torch.zeros(1, 1))))
    # truncation bootstrapped: V -> 10; treated as terminal it would average about 6
    assert v > 8.5, v


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_identical_predictions(tmp_path, env_id):
    cfg = small_config(tmp_path, norm_obs=True)
    trainer = train_policy(env_id, "ppo", total_timesteps=600, config=cfg, seed=1, checkpoint_dir=tmp_path)
    path = trainer.save(tmp_path / "p.pt")
    loaded = PolicyTrainer("ppo").load(path)
    obs = np.random.default_rng(0).normal(size=(16, *trainer.algo.observation_space.shape)).astype(np.float32)
    np.testing.assert_array_equal(trainer.predict(obs), loaded.predict(obs))
    np.testing.assert_array_equal(trainer.predict(obs[0]), loaded.predict(obs[0]))
    assert loaded.predict(obs).shape[0] == 16
    # the checkpoint carries the optimiser, counters and normalisation statistics
    assert loaded.num_timesteps == trainer.num_timesteps
    a, b = trainer.algo.optimizer.state_dict(), loaded.algo.optimizer.state_dict()
    for k in a["state"]:
        assert torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])
    assert torch.equal(trainer.algo.model.obs_norm.mean, loaded.algo.model.obs_norm.mean)
    assert (tmp_path / "policies" / "checkpoints" / "ppo" / "policy_ppo_final.pt").is_file()


def test_wrong_kind_of_checkpoint_is_refused(tmp_path):
    from robot_training.checkpoint import CheckpointError

    cfg = small_config(tmp_path)
    trainer = train_policy("CartPole-v1", "ppo", total_timesteps=256, config=cfg, checkpoint_dir=tmp_path)
    path = trainer.save(tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="expected sac"):
        PolicyTrainer("sac").load(path)
