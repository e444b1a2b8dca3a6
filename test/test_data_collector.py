"""ROSDataCollector with a real publisher process: trajectories through an interface, and
raw per-topic messages without one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# The inverted-pendulum interface's topics at 50 Hz for ~2 s, inside one START..END episode.
PUBLISHER = textwrap.dedent('''
    import sys, time
    import rclpy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64, Float64MultiArray
    from robot_training_msgs.msg import EpisodeEvent
    STEPS = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node('collector_test_publisher')
    js = node.create_publisher(JointState, '/joint_states', 10)
    cmd = node.create_publisher(Float64MultiArray, '/cmd', 10)
    rew = node.create_publisher(Float64, '/reward', 10)
    ev = node.create_publisher(EpisodeEvent, '/episode_event', 10)
    pubs = (js, cmd, rew, ev)
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs):
        if time.monotonic() > deadline:
            sys.exit('no subscriber')
        time.sleep(0.05)
    time.sleep(0.5)
    def event(kind, i):
        m = EpisodeEvent(episode_id=7, event=kind, episode_return=float(i), length=i,
                         success=True, reason='terminated')
        m.header.stamp = node.get_clock().now().to_msg()
        ev.publish(m)
    event(EpisodeEvent.EVENT_START, 0)
    for i in range(STEPS):
        stamp = node.get_clock().now().to_msg()
        m = JointState(name=['slider', 'hinge'], position=[0.01 * i, -0.01 * i], velocity=[1.0, -1.0])
        m.header.stamp = stamp
        js.publish(m)
        cmd.publish(Float64MultiArray(data=[0.5]))
        rew.publish(Float64(data=1.0))
        time.sleep(0.02)
    event(EpisodeEvent.EVENT_END, STEPS)
    time.sleep(0.5)
    print('done', flush=True)
''')


@pytest.fixture
def ros():
    import rclpy
    rclpy.init()
    yield
    rclpy.try_shutdown()


def run_publisher(steps: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', PUBLISHER, str(steps)], capture_output=True,
                          text=True, timeout=60)


def test_trajectories_through_interface(tmp_path, ros):
    from robot_training.data.trajectory import Trajectory
    from robot_training.recording import read_sidecar
    from robot_training.ros.data_collector import ROSDataCollector

    interface = REPO / 'config' / 'interface_inverted_pendulum.yaml'
    collector = ROSDataCollector(interface=interface, dataset_dir=tmp_path / 'collect')
    try:
        session = collector.start_recording()
        proc = run_publisher(100)
        assert proc.returncode == 0, proc.stderr
        trajectories = collector.stop_recording()
    finally:
        collector.close()
    assert trajectories and all(isinstance(t, Trajectory) for t in trajectories)
    steps = sum(len(t) for t in trajectories)
    assert 30 <= steps <= 60, steps  # ~2 s at 25 Hz, minus the edges
    obs = np.concatenate([np.asarray(t.observations) for t in trajectories])
    assert obs.shape[-1] == 4
    bags = sorted(session.iterdir())
    side = read_sidecar(bags[0])
    assert side['episode_id'] == 7 and side['end_cause'] == 'end'
    assert side['interface_fingerprint'] == collector.interface.fingerprint


def test_raw_messages_without_interface(tmp_path, ros):
    from robot_training.ros.data_collector import ROSDataCollector

    collector = ROSDataCollector(topics=['/joint_states', '/reward', '/cmd'],
                                 dataset_dir=tmp_path / 'collect')
    try:
        collector.start_recording()
        proc = run_publisher(60)
        assert proc.returncode == 0, proc.stderr
        data = collector.stop_recording()
        times = collector.last_receive_times['/joint_states']
        # a second session goes to a new folder and starts empty
        second = collector.start_recording()
        assert second.name == 'session_002'
        assert collector.stop_recording() == {}
    finally:
        collector.close()
    assert set(data) == {'/joint_states', '/reward', '/cmd', '/episode_event'}
    positions = [m.position[0] for m in data['/joint_states']]
    assert positions == pytest.approx([0.01 * i for i in range(60)])
    assert len(data['/reward']) == 60 and data['/reward'][0].data == 1.0
    assert [m.event for m in data['/episode_event']] == [0, 1]
    assert len(times) == 60 and times == sorted(times)
