"""The embedded multirotor (robot_training/Uav-v0): flight stack, mission, sensors, registration."""

import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo's first import: off-screen camera

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robot_training.envs  # noqa: F401  (registers the robot envs)
from robot_training.envs.robots.uav import (
    CONTROL_PERIOD,
    MAX_ROTOR_THRUST,
    ROTOR_XY,
    ROTOR_YAW_SIGN,
    WAYPOINT_HIGH,
    WAYPOINT_LOW,
    YAW_TORQUE_PER_THRUST,
    UavEnv,
    mixer_matrix,
    uav_scripted_action,
)

STEPS_PER_SECOND = int(round(1.0 / CONTROL_PERIOD))


def fly(env: UavEnv, action, seconds: float):
    """Hold one setpoint; the last step's (obs, reward, terminated, truncated, info)."""
    out = None
    for _ in range(int(round(seconds * STEPS_PER_SECOND))):
        out = env.step(np.asarray(action, dtype=np.float32))
        if out[2] or out[3]:
            break
    return out


def altitude(env: UavEnv) -> float:
    return float(env.robot_state().position[2])


def test_scripted_pilot_completes_the_default_mission():
    env = UavEnv()
    obs, info = env.reset(seed=0)
    assert info["waypoints_reached"] == 0 and info["num_waypoints"] == 3
    total_reward = 0.0
    for _ in range(env.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(uav_scripted_action(obs))
        total_reward += reward
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["mission_complete"] and info["is_success"] and not info["collision"]
    assert info["waypoints_reached"] == 3
    assert np.all(obs[13:16] == 0.0)  # no goal once the mission is complete
    assert info["path_length"] >= np.linalg.norm(np.diff(env.waypoints, axis=0), axis=1).sum() - 2 * 0.4
    assert total_reward > 3 * 10.0  # three bonuses, progress outweighs the step cost


def test_same_seed_same_mission_and_first_observation():
    a, b = UavEnv(), UavEnv()
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    np.testing.assert_array_equal(a.waypoints, b.waypoints)
    np.testing.assert_array_equal(obs_a, obs_b)
    action = np.array([1.0, 0.5, 0.2, 0.3], np.float32)
    step_a, step_b = a.step(action), b.step(action)
    np.testing.assert_array_equal(step_a[0], step_b[0])
    assert step_a[1] == step_b[1]
    obs_c, _ = b.reset(seed=8)
    assert not np.array_equal(a.waypoints, b.waypoints)
    assert not np.array_equal(obs_a, obs_c)


@pytest.mark.parametrize("seed", range(5))
def test_mission_layout(seed):
    env = UavEnv(num_waypoints=4)
    env.reset(seed=seed)
    start = env.robot_state().position
    assert start[2] == pytest.approx(1.0)
    points = np.vstack([start, env.waypoints])
    assert np.all(env.waypoints >= WAYPOINT_LOW) and np.all(env.waypoints <= WAYPOINT_HIGH)
    spacing = np.linalg.norm(np.diff(points, axis=0), axis=1)
    assert np.all((spacing >= 2.0) & (spacing <= 5.0)), spacing


def test_observation_is_the_robot_state_in_the_interface_layout():
    env = UavEnv()
    obs, _ = env.reset(seed=3)
    for _ in range(8):  # moving, tilted and turning: every entry non-trivial
        obs, *_ = env.step(np.array([1.5, -0.8, 0.5, 0.7], np.float32))
    state = env.robot_state()
    assert obs.dtype == np.float32 and obs.shape == (16,)
    expected = np.concatenate([state.orientation, state.linear_velocity, state.angular_velocity,
                               state.linear_acceleration, state.goal])
    np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(obs[[*range(10), 12, 13, 14, 15]]) > 1e-4)
    # Without rotor drag the only non-gravitational force is thrust, along body z: the
    # accelerometer's x and y read zero even while the robot accelerates sideways.
    np.testing.assert_allclose(obs[10:12], 0.0, atol=1e-9)
    assert state.scan is None and state.image is None
    np.testing.assert_allclose(state.goal_odom, env.waypoints[0])

    rotation = np.empty(9)
    qx, qy, qz, qw = state.orientation
    mujoco.mju_quat2Mat(rotation, np.array([qw, qx, qy, qz]))
    rotation = rotation.reshape(3, 3)  # base_link → odom
    np.testing.assert_allclose(rotation @ state.goal, state.goal_odom - state.position, atol=1e-9)
    qvel = env.data.qvel
    np.testing.assert_allclose(rotation @ state.linear_velocity, qvel[0:3], atol=1e-9)  # twist in base_link
    np.testing.assert_allclose(state.angular_velocity, qvel[3:6], atol=1e-9)


def test_zero_setpoint_holds_hover():
    env = UavEnv()
    obs, _ = env.reset(seed=1)
    assert obs[12] == pytest.approx(9.81, abs=1e-3)  # accelerometer reads specific force
    start = env.robot_state().position
    _, _, terminated, truncated, info = fly(env, [0, 0, 0, 0], 5.0)
    assert not terminated and not truncated and not info["collision"]
    moved = env.robot_state().position - start
    assert abs(moved[2]) < 0.1
    assert np.linalg.norm(moved) < 0.03


def test_forward_setpoint_gives_forward_body_velocity():
    env = UavEnv()
    env.reset(seed=2)
    heading_before = env.robot_state().orientation.copy()
    obs, *_ = fly(env, [1.0, 0, 0, 0], 2.0)
    assert obs[4] == pytest.approx(1.0, abs=0.05)
    assert abs(obs[5]) < 0.05 and abs(obs[6]) < 0.05
    np.testing.assert_allclose(env.robot_state().orientation, heading_before, atol=0.05)  # no yaw drift


def test_velocity_step_settles_without_overshoot():
    env = UavEnv()
    env.reset(seed=4)
    forward = [env.step(np.array([2.0, 0, 0, 0], np.float32))[0][4] for _ in range(30)]
    assert max(forward) < 2.0 * 1.02  # no overshoot
    assert all(abs(v - 2.0) < 0.05 for v in forward[15:])  # settled by 1.5 s


def test_yaw_rate_setpoint_turns():
    env = UavEnv()
    env.reset(seed=5)
    obs, *_ = fly(env, [0, 0, 0, 1.0], 1.0)
    assert obs[9] == pytest.approx(1.0, abs=0.05)


def test_full_descent_crashes():
    env = UavEnv()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = fly(env, [0, 0, -1.0, 0], 5.0)
    assert terminated and not truncated
    assert info["collision"] and not info["is_success"]
    assert reward < -9.0
    assert altitude(env) < 0.15


def test_mixer_is_the_inverse_of_the_model_rotors():
    env = UavEnv()
    model, data = env.model, env.data
    mujoco.mj_resetData(model, data)
    mixer = mixer_matrix()
    for i, ((x, y), sign) in enumerate(zip(ROTOR_XY, ROTOR_YAW_SIGN)):
        data.ctrl[:] = 0.0
        data.ctrl[i] = 1.0
        mujoco.mj_forward(model, data)  # level and at the origin: body axes = world axes
        wrench = np.array([data.qfrc_actuator[2], *data.qfrc_actuator[3:6]])
        np.testing.assert_allclose(wrench, [1.0, y, -x, sign * YAW_TORQUE_PER_THRUST], atol=1e-12)
        np.testing.assert_allclose(mixer @ wrench, np.eye(4)[i], atol=1e-9)
    np.testing.assert_allclose(model.actuator_ctrlrange, [[0.0, MAX_ROTOR_THRUST]] * 4)


@pytest.mark.filterwarnings("ignore:.*(symmetric and normalized space|observation space m..imum value is).*")
def test_gym_make_registration_checker_and_truncation():
    """The checker's remaining advice is by design: the bounds are the flight stack's (m/s,
    rad/s), and the readings have no physical bound worth declaring (as Gymnasium's MuJoCo envs)."""
    env = gym.make("robot_training/Uav-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    for steps in range(1, 401):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))
        if terminated or truncated:
            break
    assert steps == 400 and truncated and not terminated
    env.close()


def test_actions_are_clipped_to_the_bounds():
    a, b = UavEnv(), UavEnv()
    a.reset(seed=6)
    b.reset(seed=6)
    over = a.step(np.array([9.0, -9.0, 9.0, 9.0], np.float32))[0]
    at_bound = b.step(np.array([2.0, -2.0, 1.0, 1.5], np.float32))[0]
    np.testing.assert_array_equal(over, at_bound)


def test_camera_image():
    env = UavEnv(camera=True, render_mode="rgb_array")
    try:
        env.reset(seed=0)
        image = env.robot_state().image
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5  # the ground's checker pattern, not a blank frame
        view = env.render()
        assert view.shape == (240, 320, 3) and view.dtype == np.uint8
    finally:
        env.close()


@pytest.mark.parametrize("kwargs, bad", [
    ({"num_waypoints": 0}, "0"),
    ({"num_waypoints": 2.5}, "2.5"),
    ({"camera": "yes"}, "'yes'"),
    ({"max_episode_steps": -3}, "-3"),
    ({"render_mode": "human"}, "'human'"),
])
def test_bad_kwargs_name_the_value(kwargs, bad):
    with pytest.raises(ValueError, match=f"{list(kwargs)[0]}.*{bad}"):
        UavEnv(**kwargs)


def test_scripted_action_is_within_bounds_and_hovers_when_done():
    space = UavEnv().action_space
    far = np.zeros(16, np.float32)
    far[3] = 1.0  # level, heading +x
    far[13:16] = [30.0, -40.0, 10.0]
    action = uav_scripted_action(far)
    assert space.contains(action)
    assert math.hypot(action[0], action[1]) == pytest.approx(2.0, abs=1e-5)
    assert action[0] > 0 and action[1] < 0 and action[2] == pytest.approx(1.0) and action[3] < 0
    done = far.copy()
    done[13:16] = 0.0
    np.testing.assert_array_equal(uav_scripted_action(done), np.zeros(4))
