"""DataCollector, synthetic data, and the lazy ROS collector."""

import subprocess
import sys

import numpy as np
import pytest

from robot_training.data.trajectory import Trajectory
from robot_training.utils import data_collection
from robot_training.utils.data_collection import DataCollector, create_synthetic_dataset, load_trajectories


def test_random_episodes_are_trajectories_and_round_trip(tmp_path):
    collector = DataCollector("Pendulum-v1", seed=3)
    trajs = collector.collect_episodes(num_episodes=2, policy=None)
    assert len(trajs) == 2 and all(isinstance(t, Trajectory) for t in trajs)
    t = trajs[0]
    assert len(t) == 200 and t.observations.shape == (200, 3) and t.actions.shape == (200, 1)
    assert t.truncations[-1] and not t.terminals.any() and not t.truncations[:-1].any()
    assert t.final_observation.shape == (3,)
    # o_{t+1} of the env is the next row
    np.testing.assert_allclose(t.next_observations()[:-1], t.observations[1:])
    path = collector.save_trajectories(tmp_path / "trajectories.pkl.gz")
    back = load_trajectories(path)
    assert len(back) == 2
    np.testing.assert_array_equal(back[1].actions, trajs[1].actions)
    assert np.isclose(back[0].episode_return, t.episode_return)


def test_policy_object_callable_and_max_steps():
    class Zero:
        def predict(self, obs, deterministic=True):
            return np.zeros(1, np.float32)

    collector = DataCollector("Pendulum-v1", seed=0)
    t = collector.collect_episodes(1, policy=Zero(), max_steps=25)[0]
    assert len(t) == 25 and t.truncations[-1]
    assert np.all(t.actions == 0)
    t2 = collector.collect_episodes(1, policy=lambda obs: np.ones(1), max_steps=5)[0]
    assert np.all(t2.actions == 1)
    assert len(collector.trajectories) == 2


def test_discrete_env_and_termination():
    t = DataCollector("CartPole-v1", seed=0).collect_episodes(1)[0]
    assert t.terminals[-1] or t.truncations[-1]
    assert set(np.unique(t.actions)) <= {0.0, 1.0}


def test_synthetic_dataset_shapes_and_determinism():
    a = create_synthetic_dataset(num_episodes=3, observation_dim=7, action_dim=2, episode_length=20, seed=5)
    b = create_synthetic_dataset(num_episodes=3, observation_dim=7, action_dim=2, episode_length=20, seed=5)
    assert len(a) == 3 and a[0].observations.shape == (20, 7) and a[0].actions.shape == (20, 2)
    np.testing.assert_array_equal(a[2].observations, b[2].observations)
    assert np.all(np.abs(a[0].actions) <= 1)


def test_importing_data_collection_does_not_import_rclpy():
    code = ("import sys, robot_training.utils.data_collection as d; "
            "assert 'rclpy' not in sys.modules; print(d.DataCollector.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with pytest.raises(AttributeError):
        data_collection.NoSuchCollector  # noqa: B018


def test_agents_with_internal_state_are_reset_every_episode():
    """Dreamer agents and deployed policies keep their recurrent state inside (act/reset)."""

    class CountingAgent:
        def __init__(self):
            self.resets, self.steps_since_reset, self.seen_deterministic = 0, 0, set()

        def reset(self):
            self.resets += 1
            self.steps_since_reset = 0

        def act(self, observation, deterministic=True):
            self.steps_since_reset += 1
            self.seen_deterministic.add(deterministic)
            return np.array([0.0 if self.steps_since_reset < 1000 else 1.0], dtype=np.float32)

    agent = CountingAgent()
    trajs = DataCollector("Pendulum-v1", seed=0).collect_episodes(3, policy=agent, deterministic=False,
                                                                     max_steps=20)
    assert agent.resets == 3 and agent.steps_since_reset == 20
    assert [len(t) for t in trajs] == [20, 20, 20] and agent.seen_deterministic == {False}
