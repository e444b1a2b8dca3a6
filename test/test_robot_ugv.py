"""The embedded differential-drive robot ``robot_training/Ugv-v0``: its mission, sensors,
observation layout, collisions and scripted driver."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported: headless rendering

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from robot_training.envs.robots import ugv  # noqa: E402
from robot_training.envs.robots.ugv import UgvEnv, ugv_scripted_action  # noqa: E402


def run_scripted(env: UgvEnv, seed: int):
    obs, info = env.reset(seed=seed)
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(ugv_scripted_action(obs))
        rewards.append(reward)
        if terminated or truncated:
            return info, rewards, terminated, truncated


def rotation_from_xyzw(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def test_scripted_driver_completes_the_default_mission():
    env = UgvEnv()
    info, rewards, terminated, truncated = run_scripted(env, seed=0)
    assert terminated and not truncated
    assert info["mission_complete"] and info["is_success"] and not info["collision"]
    assert info["waypoints_reached"] == info["num_waypoints"] == 3
    assert sum(r > 5.0 for r in rewards) == 3  # one +10 per waypoint
    # the path is at least as long as the straight lines through the waypoints
    m = env.mission
    legs = np.linalg.norm(np.diff(np.vstack([m.start, m.waypoints]), axis=0), axis=1)
    assert legs.sum() - 3 * ugv.WAYPOINT_RADIUS <= info["path_length"] < 3.0 * legs.sum()


def test_same_seed_same_mission_and_observations():
    a, b = UgvEnv(), UgvEnv()
    obs_a, _ = a.reset(seed=11)
    obs_b, _ = b.reset(seed=11)
    np.testing.assert_array_equal(obs_a, obs_b)
    for field in ("start", "obstacles", "waypoints"):
        np.testing.assert_array_equal(getattr(a.mission, field), getattr(b.mission, field))
    for action in ([0.6, 0.3], [1.0, -1.0], [-0.2, 0.0]):
        obs_a, *_ = a.step(np.array(action, np.float32))
        obs_b, *_ = b.step(np.array(action, np.float32))
        np.testing.assert_array_equal(obs_a, obs_b)
    other, _ = b.reset(seed=12)
    assert not np.allclose(b.mission.waypoints, a.mission.waypoints)
    assert not np.allclose(other, UgvEnv().reset(seed=11)[0])


def test_missions_follow_the_placement_rules():
    env = UgvEnv()
    half = ugv.ARENA_HALF_SIZE
    for seed in range(20):
        env.reset(seed=seed)
        m = env.mission
        assert np.all(np.linalg.norm(m.obstacles - m.start, axis=1) - m.radii >= ugv.START_CLEARANCE)
        assert np.all(np.abs(m.obstacles) + m.radii[:, None] <= half - ugv.PASSAGE_WIDTH + 1e-9)
        previous = m.start
        for w in m.waypoints:
            assert 2.0 <= np.linalg.norm(w - previous) <= 4.0
            assert np.min(np.linalg.norm(m.obstacles - w, axis=1) - m.radii) >= 0.6
            assert np.all(np.abs(w) <= half - 0.6)
            previous = w


def expected_observation(state) -> np.ndarray:
    scan = np.where(np.isinf(state.scan), 6.0, state.scan)
    return np.concatenate([np.clip(scan, 0.0, 6.0), state.linear_velocity, state.angular_velocity,
                           state.angular_velocity, state.linear_acceleration, state.goal[:2]]).astype(np.float32)


def test_observation_is_the_robot_state_in_the_interface_layout():
    env = UgvEnv()
    obs, _ = env.reset(seed=0)
    state = env.robot_state()
    assert obs.shape == (78,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, expected_observation(state))
    assert np.isinf(state.scan).any() and np.isfinite(state.scan).any()  # both kinds of beam are tested
    np.testing.assert_array_equal(obs[:64][np.isinf(state.scan)], 6.0)
    assert state.scan_angle_min == -np.pi and state.scan_angle_max == pytest.approx(np.pi - 2 * np.pi / 64)
    assert (state.scan_range_min, state.scan_range_max) == (0.05, 6.0)
    assert state.image is None
    # at rest: specific force +g on z, no motion
    assert obs[75] == pytest.approx(9.81, abs=0.05)
    assert np.abs(obs[64:73]).max() < 0.02
    for action in ([0.5, 0.0],) * 12 + ([0.0, 1.0],) * 12:
        obs, *_ = env.step(np.array(action))
        np.testing.assert_array_equal(obs, expected_observation(env.robot_state()))
    assert obs[69] == pytest.approx(1.0, abs=0.1) and obs[72] == obs[69]  # odom and gyro yaw rate


def test_interface_description_builds_the_observation_from_the_robots_messages(repo_root):
    """config/interface_ugv.yaml applied to the simulator's full ROS messages gives back the
    env's observation, step after step, and the scripted driver completes missions through it."""
    typesys = pytest.importorskip("rosbags.typesys")
    from robot_training.interface.converters import rosbags_message_factory
    from robot_training.interface.description import load_interface
    from robot_training.envs.ros_sim import InterfaceSim

    interface = load_interface(repo_root / "config" / "interface_ugv.yaml")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    factories = {s.topic: rosbags_message_factory(store, s.msgtype) for s in interface.observations}
    sim = InterfaceSim(interface, "robot_training/Ugv-v0", message_factories=factories)
    out = sim.reset()
    np.testing.assert_allclose(sim.mission_waypoints()[:, :2], sim.env.unwrapped.mission.waypoints)
    ends = []
    for _ in range(300):
        built = interface.build_observation(out.observations)
        np.testing.assert_array_equal(built, out.observation.astype(np.float32))
        sim.set_action(ugv_scripted_action(built))
        out = sim.step()
        ends += [e for e in out.events if e.reason]
        if ends:
            break
    assert ends and ends[0].reason == "terminated" and ends[0].success
    sim.close()


def test_twist_follows_the_command_in_base_link():
    env = UgvEnv()
    env.reset(seed=3)
    for _ in range(10):
        obs, *_ = env.step(np.array([0.5, 0.0], np.float32))
    assert obs[64] == pytest.approx(0.5, abs=0.03) and abs(obs[65]) < 0.02 and abs(obs[69]) < 0.05
    for _ in range(5):
        obs, *_ = env.step(np.array([5.0, 0.0], np.float32))  # clipped to 1 m/s
    assert obs[64] == pytest.approx(1.0, abs=0.05)


def test_scan_and_goal_geometry_in_base_link():
    """Every lidar return lies on a wall's face or an obstacle's surface, with the beams
    counter-clockwise from -pi in base_link; the goal is the waypoint rotated into base_link."""
    env = UgvEnv()
    env.reset(seed=5)
    for _ in range(8):
        env.step(np.array([0.3, 0.8], np.float32))  # some yaw, away from the start
    state = env.robot_state()
    rotation = rotation_from_xyzw(state.orientation)
    angles = state.scan_angle_min + np.arange(64) * 2 * np.pi / 64
    origin = state.position + rotation @ np.array([0.0, 0.0, ugv.SCAN_HEIGHT])
    m, half = env.mission, ugv.ARENA_HALF_SIZE
    hits = 0
    for angle, r in zip(angles, state.scan):
        if not np.isfinite(r):
            continue
        hit = origin + rotation @ (r * np.array([np.cos(angle), np.sin(angle), 0.0]))
        on_wall = min(abs(abs(hit[0]) - half), abs(abs(hit[1]) - half)) < 0.01
        on_obstacle = np.min(np.abs(np.linalg.norm(m.obstacles - hit[:2], axis=1) - m.radii)) < 0.01
        assert on_wall or on_obstacle, (angle, r, hit)
        hits += 1
    assert hits > 20
    goal = rotation.T @ (state.goal_odom - state.position)
    np.testing.assert_allclose(state.goal, goal, atol=1e-9)
    np.testing.assert_allclose(state.goal_odom[:2], m.waypoints[0])


def test_driving_into_something_is_a_terminal_collision():
    env = UgvEnv()
    env.reset(seed=2)
    for step in range(1, 200):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
        if terminated:
            break
        assert not info["collision"]
    assert terminated and not truncated and step > 3
    assert info["collision"] and not info["is_success"]
    assert reward < -9.0
    assert obs[:64].min() < 0.35  # really against a wall or an obstacle


def test_gym_make_truncates_at_600_and_passes_the_env_checker():
    import robot_training.envs  # noqa: F401  (registers the robots)

    env = gym.make("robot_training/Ugv-v0")
    assert isinstance(env.unwrapped, UgvEnv) and env.unwrapped.robot_name == "ugv"
    assert env.observation_space.shape == (78,)
    np.testing.assert_array_equal(env.action_space.low, [-0.5, -2.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0, 2.0])
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=1)
    for step in range(1, 601):
        _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        assert not terminated
        if truncated:
            break
    assert truncated and step == 600 and info["path_length"] < 0.01
    env.close()


def test_camera_image_is_rendered_on_demand():
    env = UgvEnv(camera=True)
    env.reset(seed=0)
    first = env.robot_state().image
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert first.std() > 10.0
    assert env.robot_state().image is first  # reused within a step
    for _ in range(8):
        env.step(np.array([0.0, 2.0], np.float32))
        assert env._image is None  # step() never renders
    turned = env.robot_state().image
    assert np.abs(turned.astype(int) - first.astype(int)).mean() > 2.0
    env.close()


@pytest.mark.parametrize("kwargs, shown", [({"num_waypoints": 0}, "0"), ({"num_obstacles": -1}, "-1"),
                                           ({"camera": "yes"}, "'yes'"), ({"render_mode": "human"}, "'human'"),
                                           ({"num_obstacles": 80}, "80"), ({"disturbance": -0.1}, "-0.1"),
                                           ({"disturbance": "big"}, "'big'"), ({"disturbance_hold_steps": 0}, "0")])
def test_bad_kwargs_name_the_value(kwargs, shown):
    with pytest.raises(ValueError, match=shown):
        UgvEnv(**kwargs)


def test_disturbance_pushes_the_robot_but_keeps_the_mission_and_the_command():
    """The demonstrations' disturbance: the same seed gives the same mission; the same commands
    then drive a different path (offsets held for disturbance_hold_steps), reproducibly; a
    disturbance of 0 is the plain env, step for step."""
    plain, pushed, again = UgvEnv(), UgvEnv(disturbance=0.5, disturbance_hold_steps=5), UgvEnv(disturbance=0.5,
                                                                                              disturbance_hold_steps=5)
    obs = [e.reset(seed=3)[0] for e in (plain, pushed, again)]
    np.testing.assert_array_equal(obs[0], obs[1])
    np.testing.assert_array_equal(plain.mission.waypoints, pushed.mission.waypoints)
    command = np.array([0.5, 0.0], np.float32)
    offsets = []
    for _ in range(10):
        a, b, c = (e.step(command)[0] for e in (plain, pushed, again))
        np.testing.assert_array_equal(b, c)
        offsets.append(pushed._offset.copy())
    assert not np.allclose(a, b)  # driven off the plain path
    np.testing.assert_array_equal(offsets[0], offsets[4])  # held 5 steps, then redrawn
    assert not np.allclose(offsets[4], offsets[5])
    assert np.all(np.abs(offsets[0]) > 0)
    zero = UgvEnv(disturbance=0.0)
    first = zero.reset(seed=3)[0]
    np.testing.assert_array_equal(first, UgvEnv().reset(seed=3)[0])
