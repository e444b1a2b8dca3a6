"""One learner surface: every registry entry's learner follows :class:`Learner`, and its
``train_step`` on a tiny batch changes its weights (tiny real models, CPU)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from robot_training import algorithms
from robot_training.algorithms import REGISTRY, Algorithm, resolve
from robot_training.checkpoint import load_checkpoint
from robot_training.config import Config
from robot_training.learner import Learner
from test_world_model import linear_system

torch.set_num_threads(1)


def tiny_world_model_config() -> Config:
    return Config().replace(world_model=dict(size="tiny", batch_size=4, sequence_length=8, learning_rate=3e-3),
                            dreamer=dict(imagine_horizon=5, eval_every=0),
                            training=dict(device="cpu", seed=0, tensorboard=False, progress_bar=False))


def weights(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def changed(before, *modules) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, weights(*modules)))


OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def ppo_case():
    from robot_training.policies.ppo import PPO, RolloutBatch

    algo = PPO(OBS, ACT, Config().replace(policy=dict(hidden_dim=16, num_minibatches=2, update_epochs=1)))
    n = 16
    obs = torch.randn(n, 4)
    with torch.no_grad():
        actions, logp, values = algo.model.act(obs)
    batch = RolloutBatch(obs, actions, logp, torch.randn(n), torch.randn(n), values)
    return algo, batch, [algo.model]


def sac_case():
    from robot_training.policies.sac import SAC

    algo = SAC(OBS, ACT, Config().replace(sac=dict(hidden_dim=16, batch_size=8, policy_frequency=1)))
    rng = np.random.default_rng(0)
    algo.replay.add(rng.normal(size=(32, 4)).astype(np.float32), rng.uniform(-2, 2, (32, 2)).astype(np.float32),
                    rng.normal(size=32), rng.normal(size=(32, 4)).astype(np.float32), np.zeros(32, np.float32))
    return algo, algo.replay.sample(8), [algo.actor, algo.qf]


def bc_case():
    from robot_training.supervised_learning.bc import BehavioralCloning
    from robot_training.utils.data_collection import create_synthetic_dataset

    demos = create_synthetic_dataset(3, observation_dim=4, action_dim=2, episode_length=20, seed=0)
    algo = BehavioralCloning(Config().replace(bc=dict(hidden_dim=16, num_epochs=1)))
    algo.learn(demos)  # builds the network (sizes and standardisation from the data)
    return algo, demos, [algo.model]


def world_model_case():
    from robot_training.world_models.train_world_model import WorldModelTrainer

    trainer = WorldModelTrainer((3,), 2, tiny_world_model_config())
    trainer.set_data(linear_system(num_episodes=3, length=12))
    return trainer, trainer.sample(trainer.train_replay), [trainer.model]


def dreamer_case():
    from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer

    trainer = DreamerTrainer((3,), 2, tiny_world_model_config())
    trainer.add_trajectories(linear_system(num_episodes=3, length=12))
    agent = trainer.agent
    return trainer, trainer.sample(), [agent.world_model, agent.behavior.actor, agent.behavior.critic]


CASES = {"ppo": ppo_case, "sac": sac_case, "bc": bc_case, "world_model": world_model_case, "dreamer": dreamer_case}


def test_every_registry_entry_has_a_case():
    assert sorted(CASES) == sorted(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_the_registry_learner_follows_the_protocol(name):
    cls = resolve(REGISTRY[name].learner)
    assert issubclass(cls, Learner), name
    for method in ("learn", "train_step", "predict", "save", "load"):
        assert callable(getattr(cls, method)), (name, method)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_train_step_on_a_tiny_batch_changes_the_weights(name):
    torch.manual_seed(0)
    learner, batch, modules = CASES[name]()
    assert isinstance(learner, Learner)
    before = weights(*modules)
    metrics = learner.train_step(batch)
    assert metrics and all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert changed(before, *modules), f"{name}: train_step left the weights as they were"


@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_a_model_free_learner_saves_and_loads_itself(name, tmp_path):
    torch.manual_seed(0)
    learner, batch, _ = CASES[name]()
    learner.train_step(batch)
    path = learner.save(tmp_path / f"{name}.pt")
    torch.manual_seed(1)
    other, _, _ = CASES[name]()
    assert other.load(path) is other
    obs = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(other.predict(obs), learner.predict(obs))
    if name == "sac":
        assert len(other.replay) == len(learner.replay) == 32  # the replay file beside it


def test_a_new_off_policy_algorithm_is_its_networks_and_train_step(monkeypatch, tmp_path):
    """A deterministic-actor critic learner (DDPG-like) in a few lines: the off-policy collection,
    checkpoints and env handling come from OffPolicyLearner; one registry line names it."""
    from robot_training.data.replay import ReplayBuffer
    from robot_training.networks.mlp import mlp
    from robot_training.policies.common import OffPolicyLearner

    class Tiny(OffPolicyLearner):
        algorithm = "tiny"

        def build(self):
            obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
            self.actor = mlp(obs_dim, act_dim, 16, 1)
            self.critic = mlp(obs_dim + act_dim, 1, 16, 1)
            self.optimizer = torch.optim.Adam([*self.actor.parameters(), *self.critic.parameters()], lr=1e-3)
            self.replay = ReplayBuffer(self.cfg.buffer_size, self.observation_space.shape, act_dim, seed=self.seed)

        @torch.no_grad()
        def explore(self, observations):
            a = torch.tanh(self.actor(torch.as_tensor(observations, dtype=torch.float32)))
            return (a * 2.0).numpy()

        def train_step(self, batch):
            q = self.critic(torch.cat([batch.observations, batch.actions], -1)).squeeze(-1)
            q_loss = (q - batch.rewards).pow(2).mean()
            pi = torch.tanh(self.actor(batch.observations)) * 2.0
            actor_loss = -self.critic(torch.cat([batch.observations, pi], -1)).mean()
            self.optimizer.zero_grad()
            (q_loss + actor_loss).backward()
            self.optimizer.step()
            self.num_updates += 1
            return {"q_loss": q_loss.detach()}

        def predict(self, observation, deterministic=True):
            return self.explore(np.asarray(observation, np.float32))

        def payload(self):
            return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict()}

        def load_payload(self, state):
            self.actor.load_state_dict(state["actor"])
            self.critic.load_state_dict(state["critic"])

    registry = dict(REGISTRY)
    # its one registry line (the learner string would name its module; the class is local here)
    registry["tiny"] = Algorithm("tiny", "policy", "sac", "robot_training.policies.sac:SAC")
    monkeypatch.setattr(algorithms, "REGISTRY", registry)
    cfg = Config().replace(sac=dict(learning_starts=50, batch_size=16, buffer_size=1000))
    env = gym.make("Pendulum-v1")
    algo = Tiny(env.observation_space, env.action_space, cfg, env="Pendulum-v1", seed=0)
    assert isinstance(algo, Learner)
    before = weights(algo.actor, algo.critic)
    algo.learn(120)
    algo.close()
    assert algo.num_timesteps == 120 and len(algo.replay) == 120
    assert algo.num_updates == 120 - 50 + 1 and changed(before, algo.actor, algo.critic)
    path = algo.save(tmp_path / "policy_tiny.pt")  # checkpoint + replay file, from the base
    again = Tiny.from_state(load_checkpoint(path, kind="tiny"), cfg)
    assert again.num_updates == algo.num_updates and len(again.load(path).replay) == 120
