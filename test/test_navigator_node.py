"""The embedded robots over ROS as real processes: the simulator serving the ugv and uav,
the navigator node driving their missions, the recorder writing what a dataset is built from.
"""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest

from ros_helpers import REPO, node_cmd, spin_until, stop

ENV = {'ugv': 'robot_training/Ugv-v0', 'uav': 'robot_training/Uav-v0'}


def navigator_cmd(*params: str) -> list:
    return node_cmd('navigator_node', *params)


@pytest.mark.parametrize('robot', ['ugv', 'uav'])
def test_scripted_navigator_drives_a_mission_over_ros(robot, procs, tmp_path):
    """Simulator in lock-step with the navigator's scripted controller: the mission is
    complete, without a collision, and the report says so."""
    report = tmp_path / 'report.json'
    sim = procs.start(node_cmd('sim_node', f'env:={ENV[robot]}', 'step_mode:=command', 'seed:=7',
                               'wait_for_subscribers:=1', 'status_period_s:=0.0'))
    nav = procs.start(navigator_cmd(f'robot:={robot}', 'missions:=1', f'report_file:={report}'))
    nav.wait(timeout=120)
    out = '\n'.join(nav.lines)
    assert nav.returncode == 0, out + '\n--- sim ---\n' + '\n'.join(sim.lines)
    result = json.loads(report.read_text())['missions'][0]
    assert result['waypoints_reached'] == result['num_waypoints'] == 3, out
    assert not result['collision'] and result['reason'] == 'terminated'
    assert result['path_length_m'] > 2.0 and 0 < result['time_s'] <= 60.0
    assert result['steps'] == pytest.approx(result['time_s'] / 0.1, abs=2)
    stop(sim, signal.SIGTERM)


def test_navigator_sends_waypoints_from_odometry(procs, ros_node):
    """Gazebo / a real robot: no simulator mission. Given its own waypoints the navigator
    sends each next one as /goal_pose in base_link from /odom, and reports the mission."""
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry

    nav = procs.start(navigator_cmd('robot:=ugv', 'drive:=none', 'missions:=1', 'waypoints:=[1.0, 0.0, 0.0, 1.0, 2.0, 0.0]'))
    goals = []
    ros_node.create_subscription(PoseStamped, '/goal_pose', goals.append, 10)
    odom_pub = ros_node.create_publisher(Odometry, '/odom', 10)
    yaw = np.pi / 2  # facing +y in odom
    state = {'x': 0.0, 'y': 0.0}

    def drive():
        msg = Odometry()
        msg.header.frame_id = 'odom'
        msg.pose.pose.position.x, msg.pose.pose.position.y = state['x'], state['y']
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = np.sin(yaw / 2), np.cos(yaw / 2)
        odom_pub.publish(msg)

    timer = ros_node.create_timer(0.05, drive)
    spin_until(ros_node, lambda: len(goals) > 3, 30, 'goals')
    first = goals[-1]
    assert first.header.frame_id == 'base_link'
    # waypoint (1, 0) seen from (0, 0) facing +y: 1 m to the right, i.e. y = -1 in base_link
    assert first.pose.position.x == pytest.approx(0.0, abs=1e-6) and first.pose.position.y == pytest.approx(-1.0)
    state['x'] = 0.9  # within 0.3 m of the first waypoint
    # the second, (1, 2), from (0.9, 0): 2 m ahead and 0.1 m to the right
    spin_until(ros_node, lambda: goals[-1].pose.position.x == pytest.approx(2.0)
               and goals[-1].pose.position.y == pytest.approx(-0.1), 10, 'the second waypoint')
    state['x'], state['y'] = 1.0, 1.9
    spin_until(ros_node, lambda: nav.poll() is not None, 20, 'the navigator to finish')
    ros_node.destroy_timer(timer)
    assert nav.returncode == 0, '\n'.join(nav.lines)
    assert any('mission 0: 2/2 waypoints, no collision' in line for line in nav.lines), '\n'.join(nav.lines)


def test_sim_recorder_bag_dataset_equals_the_env(procs, tmp_path):
    """ugv with its camera, over ROS into one bag per episode: the dataset's LaserScan,
    Odometry, Imu, goal and Image arrays are the env's own readings, step for step (the
    mission replayed in-process with the recorded actions). Timer stepping in real time, as
    the learning loop records (the replay assumes no tick was missed: 100 ms periods)."""
    from robot_training.data.bag_dataset import load_bag_dataset
    from robot_training.interface.description import load_interface
    from robot_training.envs import make_env

    interface_file = REPO / 'config' / 'interface_ugv_camera.yaml'
    dataset = tmp_path / 'dataset'
    sim = procs.start(node_cmd('sim_node', f'env:={ENV["ugv"]}', f'interface_file:={interface_file}',
                               "env_kwargs:='{camera: true}'", 'seed:=3',
                               'max_episode_steps:=25', 'wait_for_subscribers:=2', 'status_period_s:=0.0'))
    recorder = procs.start([sys.executable, '-m', 'robot_training.ros.recorder_node', '--ros-args',
                            '--params-file', str(REPO / 'config' / 'recorder.yaml'),
                            '-p', f'dataset_dir:={dataset}', '-p', f'interface_file:={interface_file}',
                            '-p', 'use_sim_time:=true', '-p', 'discovery_period_s:=0.2'])
    nav = procs.start(navigator_cmd('robot:=ugv', f'interface_file:={interface_file}', 'missions:=1'))
    nav.wait(timeout=120)
    assert nav.returncode == 0, '\n'.join(nav.lines)
    stop(recorder, signal.SIGINT, timeout=30)
    stop(sim, signal.SIGTERM)
    interface = load_interface(interface_file)
    bags = sorted(p for p in dataset.iterdir() if p.is_dir())
    trajs = load_bag_dataset(bags[0], interface, cache=False)
    assert len(trajs) == 1, '\n'.join(recorder.lines)
    traj = trajs[0]
    assert len(traj) >= 20, len(traj)

    env = make_env(ENV['ugv'], camera=True)
    obs, _ = env.reset(seed=3)
    for t in range(len(traj)):
        state = env.unwrapped.robot_state()
        recorded = {k: v[t] for k, v in traj.observations.items()}
        # (the physics of two processes agree to rounding: velocities to 1e-4 at rest)
        np.testing.assert_allclose(recorded['scan'], obs[:64], atol=1e-3, err_msg=f'scan at step {t}')
        np.testing.assert_allclose(recorded['odom'], obs[64:70], atol=1e-3, err_msg=f'odom at step {t}')
        np.testing.assert_allclose(recorded['imu'], obs[70:76], atol=1e-2, err_msg=f'imu at step {t}')
        np.testing.assert_allclose(recorded['goal'], obs[76:78], atol=1e-3, err_msg=f'goal at step {t}')
        diff = np.abs(recorded['camera'].astype(int) - state.image.astype(int))  # software GL rounds
        assert diff.max() <= 2 and diff.mean() < 0.05, f'camera at step {t}: {diff.max()} {diff.mean()}'
        obs, *_ = env.step(interface.clip_action(traj.actions[t]).astype(np.float32))
    assert np.ptp(traj.observations['camera'].astype(np.float32)) > 0
    env.close()
