"""Transition and sequence datasets over trajectories (from a real bag and hand-made ones)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robot_training.data.bag_dataset import load_bag_dataset, write_synthetic_bag
from robot_training.data.interface import interface_from_dict
from robot_training.data.sequence_dataset import SequenceDataset, TransitionDataset
from robot_training.data.trajectory import Trajectory


def traj(n, start, terminal=True, dict_obs=False, eid="t"):
    k = np.arange(start, start + n, dtype=np.float32)
    obs = np.stack([k, -k], axis=1)
    final = np.array([start + n, -(start + n)], np.float32)
    if dict_obs:
        obs = {"v": obs, "img": np.repeat(k.astype(np.uint8)[:, None, None, None], 4, axis=1)}
        final = {"v": final, "img": np.full((4, 1, 1), start + n, np.uint8)}
    term = np.zeros(n, bool)
    term[-1] = terminal
    return Trajectory(observations=obs, actions=k[:, None] * 10, rewards=k, terminals=term,
                      truncations=~term & (np.arange(n) == n - 1), final_observation=final, episode_id=eid)


def test_transitions_pair_obs_with_next_obs_inside_trajectories():
    ds = TransitionDataset([traj(3, 0), traj(2, 100, terminal=False)])
    assert len(ds) == 5
    b = ds._batch(np.arange(5))
    np.testing.assert_array_equal(b.observations[:, 0], [0, 1, 2, 100, 101])
    np.testing.assert_array_equal(b.next_observations[:, 0], [1, 2, 3, 101, 102])  # final_observation at ends
    np.testing.assert_array_equal(b.dones, [False, False, True, False, False])
    np.testing.assert_array_equal(b.truncations, [False, False, False, False, True])
    np.testing.assert_array_equal(b.actions[:, 0], b.observations[:, 0] * 10)
    s = ds.sample(64, np.random.default_rng(0))
    assert s.observations.shape == (64, 2) and s.actions.dtype == torch.float32
    np.testing.assert_array_equal(s.rewards, s.observations[:, 0])


def test_full_windows_only_never_cross_trajectories():
    ds = SequenceDataset([traj(5, 0), traj(2, 100), traj(4, 200)], length=3)
    assert len(ds) == 3 + 0 + 2
    b = ds._batch(np.arange(len(ds)))
    assert b.observations.shape == (5, 3, 2) and b.mask.all()
    for w in b.observations[:, :, 0]:
        assert torch.all(torch.diff(w) == 1)
    np.testing.assert_array_equal(b.is_first[:, 0], [True, False, False, True, False])
    np.testing.assert_array_equal(b.is_first[3], [True, False, False])
    np.testing.assert_array_equal(b.terminals[2], [False, False, True])


def test_padded_tails_are_masked():
    ds = SequenceDataset([traj(5, 0), traj(2, 100)], length=3, stride=3, pad=True)
    b = ds._batch(np.arange(len(ds)))
    # windows: [0,1,2], tail [3,4]+pad, short trajectory [100,101]+pad
    np.testing.assert_array_equal(b.mask, [[1, 1, 1], [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(b.observations[:, :, 0], [[0, 1, 2], [3, 4, 0], [100, 101, 0]])
    np.testing.assert_array_equal(b.rewards[1], [3, 4, 0])
    with pytest.raises(ValueError, match="no trajectory has 9 steps"):
        SequenceDataset([traj(5, 0)], length=9)


def test_dict_observations_and_dataloader():
    ds = SequenceDataset([traj(6, 0, dict_obs=True)], length=4)
    loader = DataLoader(ds, batch_size=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["observations"]["img"].shape == (2, 4, 4, 1, 1)
    assert batch["observations"]["img"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["observations"]["v"][1, :, 0], [1, 2, 3, 4])
    t = TransitionDataset([traj(6, 0, dict_obs=True)])
    item = next(iter(DataLoader(t, batch_size=3)))
    np.testing.assert_array_equal(item["next_observations"]["v"][:, 0], [1, 2, 3])


def test_mismatched_trajectories_rejected():
    with pytest.raises(ValueError, match="has observation"):
        TransitionDataset([traj(3, 0), traj(3, 0, dict_obs=True)])


def test_from_bag(tmp_path):
    bag = write_synthetic_bag(tmp_path / "b", steps=60, episodes=2)
    desc = interface_from_dict({
        "control_rate_hz": 100,
        "observations": [{"name": "j", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                          "joint_names": ["slider", "hinge"]}],
        "action": {"topic": "/cmd", "type": "std_msgs/msg/Float64MultiArray", "size": 1},
        "reward": {"topic": "/reward", "type": "std_msgs/msg/Float64"},
        "episodes": {"topic": "/episode_event"},
    })
    trajs = load_bag_dataset(bag, desc, cache=False)
    seq = SequenceDataset(trajs, length=10)
    b = seq.sample(8, np.random.default_rng(1))
    assert b.observations.shape == (8, 10, 4) and b.actions.shape == (8, 10, 1)
    # within a window the command follows the state index one to one
    np.testing.assert_allclose(b.actions[..., 0] * 1e-3, b.observations[..., 0], atol=1e-6)
    tr = TransitionDataset(trajs)
    assert len(tr) == sum(len(t) for t in trajs) and tr.terminals.sum() == 2
