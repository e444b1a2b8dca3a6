"""Waypoint scenarios (the seed's ``tests.scenarios.test_waypoint``): the scripted navigator
completes missions with each robot, in Python and over ROS; a briefly trained checkpoint
drives ``WaypointNavigator`` through the deploy path; the navigator node's mission logic
follows a mission from odometry alone, as it must on Gazebo or a real robot.

``WaypointNavigator`` lives in :mod:`robot_training.scenarios` and is re-exported here, where
the seed's example imported it from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robot_training.config import Config
from robot_training.deploy import DeployError
from robot_training.scenarios import WaypointNavigator
from robot_training.scenarios.mission import MissionTracker, rotate_into_body

__all__ = ["WaypointNavigator"]

torch.set_num_threads(1)


@pytest.mark.parametrize("robot", ["ugv", "uav"])
def test_scripted_navigator_completes_missions(robot):
    navigator = WaypointNavigator(robot)
    report = navigator.run(num_missions=3, seed=10)
    navigator.close()
    assert len(report.missions) == 3
    assert report.waypoint_rate == 1.0 and report.collision_rate == 0.0, report.summary()
    for m in report.missions:
        assert m.success and m.steps > 5 and m.path_length_m > 1.0
        assert m.time_s == pytest.approx(m.steps * 0.1)
    assert "waypoints reached 100.0 %" in report.summary()
    json.dumps(report.to_dict())  # plain data


def test_a_trained_checkpoint_drives_the_navigator(tmp_path):
    """The mechanics, not success: a PPO checkpoint of a few hundred steps passes the interface
    check and its actions reach the robot; the same trainer object drives it too; a checkpoint
    of another robot is refused with the deploy path's error."""
    from robot_training.policies.train_policy import PolicyTrainer

    cfg = Config().replace(policy=dict(hidden_dim=16, num_envs=1, num_steps=128, num_minibatches=1, update_epochs=1),
                           training=dict(tensorboard=False, progress_bar=False, checkpoint_every=0,
                                         log_dir=str(tmp_path / "runs")))
    trainer = PolicyTrainer("ppo", "robot_training/Uav-v0", config=cfg, checkpoint_dir=tmp_path)
    trainer.learn(256)
    trainer.close()

    class Recording(WaypointNavigator):
        def select_action(self, observation):
            action = super().select_action(observation)
            self.actions.append(action)
            return action

    navigator = Recording("uav", policy=trainer.final_checkpoint, deterministic=False)
    navigator.actions = []
    assert "ppo policy" in navigator.source.name
    result = navigator.run_mission(seed=3)
    actions = np.array(navigator.actions)
    assert result.steps == len(actions) > 0
    assert actions.shape[1] == 4 and np.ptp(actions, axis=0).max() > 0  # the policy's own, varying actions
    assert (actions >= navigator.interface.action.low - 1e-6).all()
    assert (actions <= navigator.interface.action.high + 1e-6).all()
    navigator.use_policy(trainer)
    assert navigator.run_mission(seed=3).steps > 0
    with pytest.raises(DeployError, match="observes"):
        WaypointNavigator("ugv", policy=trainer.final_checkpoint)
    with pytest.raises(ValueError, match="robot: expected one of ugv, uav, got 'boat'"):
        WaypointNavigator("boat")
    with pytest.raises(TypeError, match="policy: expected"):
        WaypointNavigator("uav", policy=42)


@pytest.mark.parametrize("robot", ["ugv", "uav"])
def test_mission_tracker_follows_the_env(robot):
    """From odometry alone the tracker gives the goal the env observes and counts the same
    waypoints: a navigator on Gazebo sends what the policy was trained to see."""
    navigator = WaypointNavigator(robot)
    env = navigator.env.unwrapped
    obs, info = navigator.env.reset(seed=4)
    tracker = MissionTracker(env.waypoints, 0.3 if robot == "ugv" else 0.4, planar=robot == "ugv")
    goal_slice = navigator.interface.observation_slices["goal"]
    done = False
    while not done:
        state = env.robot_state()
        goal = tracker.update(state.position, state.orientation)
        assert tracker.reached == info["waypoints_reached"]
        np.testing.assert_allclose(goal[:goal_slice.stop - goal_slice.start], obs[goal_slice], atol=1e-4)
        obs, _, terminated, truncated, info = navigator.env.step(navigator.select_action(obs))
        done = terminated or truncated
    state = env.robot_state()
    tracker.update(state.position, state.orientation)
    assert tracker.complete and info["mission_complete"]
    assert tracker.path_length == pytest.approx(info["path_length"], rel=0.05)
    navigator.close()


def test_rotate_into_body():
    yaw90 = (0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4))
    np.testing.assert_allclose(rotate_into_body([1.0, 0.0, 0.0], yaw90), [0.0, -1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="at least one waypoint"):
        MissionTracker([], 0.3, planar=True)
