"""Simulator node as a real process over real DDS: observations, reward, episode events,
/clock, world reset/pause services, SIGTERM. Helpers here are shared with the other node tests.

Every process runs in the session's ROS domain (conftest.py) and is killed at the end of its test.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INTERFACE = REPO / 'config' / 'interface_inverted_pendulum.yaml'


class Procs:
    """Child processes whose output is collected by a thread; killed at the end."""

    def __init__(self):
        self.procs = []

    def start(self, args):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proc.lines = []
        proc.queue = queue.Queue()

        def pump():
            for line in proc.stdout:
                proc.lines.append(line.rstrip('\n'))
                proc.queue.put(line.rstrip('\n'))
            proc.queue.put(None)

        proc.pump = threading.Thread(target=pump, daemon=True)
        proc.pump.start()
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.close()


@pytest.fixture
def ros_node():
    import rclpy

    rclpy.init()
    node = rclpy.create_node('deploy_test_client')
    yield node
    node.destroy_node()
    rclpy.shutdown()


def node_cmd(module: str, *params: str) -> list:
    args = [sys.executable, '-m', f'robot_training.ros.{module}', '--ros-args']
    for p in params:
        args += ['-p', p]
    return args


def spin_until(node, predicate, timeout: float, what: str = '') -> None:
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        rclpy.spin_once(node, timeout_sec=0.05)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def spin_for(node, seconds: float) -> None:
    import rclpy

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def call(node, srv_type, name: str, request, timeout: float = 30.0):
    """Call a service; asks again while the reply path is still matching (a first request can be lost)."""
    import rclpy

    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=3.0)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f'no reply from {name}')
    finally:
        node.destroy_client(client)


def stop(proc, sig=signal.SIGINT, timeout: float = 15.0) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    proc.pump.join(timeout=5)
    return '\n'.join(proc.lines)


def test_sim_publishes_steps_and_obeys_world_services(procs, ros_node):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64, Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    from robot_training_msgs.msg import EpisodeEvent

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'max_episode_steps:=15',
                               'real_time_factor:=2.0', 'world_name:=pend'))
    got = {'js': [], 'clock': [], 'ev': [], 'rew': []}
    ros_node.create_subscription(JointState, '/joint_states', got['js'].append, 10)
    ros_node.create_subscription(Clock, '/clock', got['clock'].append, 10)
    ros_node.create_subscription(EpisodeEvent, '/episode_event', got['ev'].append, 10)
    ros_node.create_subscription(Float64, '/reward', got['rew'].append, 10)
    cmd = ros_node.create_publisher(Float64MultiArray, '/cmd', 10)
    timer = ros_node.create_timer(0.05, lambda: cmd.publish(Float64MultiArray(data=[1.0])))

    spin_until(ros_node, lambda: any(e.event == EpisodeEvent.EVENT_END for e in got['ev']), 60, 'an episode end')
    js = got['js'][-1]
    assert list(js.name) == ['slider', 'hinge'] and len(js.position) == 2 and len(js.velocity) == 2
    end = next(e for e in got['ev'] if e.event == EpisodeEvent.EVENT_END)
    assert end.reason in ('terminated', 'truncated') and 1 <= end.length <= 15
    assert got['rew'] and all(r.data == 1.0 for r in got['rew'])
    ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in got['clock']]
    steps = [b - a for a, b in zip(ns, ns[1:])]
    assert steps and set(steps) == {40_000_000}  # 1 / 25 Hz of simulated time per step

    assert call(ros_node, SetBool, '/world/pend/pause', SetBool.Request(data=True)).success
    spin_for(ros_node, 0.3)
    count = len(got['clock'])
    spin_for(ros_node, 0.6)
    assert len(got['clock']) == count  # paused: no step
    assert call(ros_node, SetBool, '/world/pend/pause', SetBool.Request(data=False)).success
    before = len(got['ev'])
    reply = call(ros_node, Trigger, '/world/pend/reset', Trigger.Request())
    assert reply.success
    spin_until(ros_node, lambda: any(e.event == EpisodeEvent.EVENT_START for e in got['ev'][before:]), 10,
               'a start after reset')
    ros_node.destroy_timer(timer)
    stop(sim, signal.SIGTERM)
    assert sim.returncode == 0, '\n'.join(sim.lines)


def test_sim_command_stepping(procs, ros_node):
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Float64MultiArray

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'step_mode:=command'))
    clocks = []
    ros_node.create_subscription(Clock, '/clock', clocks.append, 10)
    cmd = ros_node.create_publisher(Float64MultiArray, '/cmd', 10)
    spin_until(ros_node, lambda: cmd.get_subscription_count() > 0, 30, 'the sim subscribing /cmd')
    spin_for(ros_node, 1.0)
    assert len(clocks) <= 1  # nothing steps without commands (at most the start's clock)
    for _ in range(5):
        cmd.publish(Float64MultiArray(data=[0.0]))
        spin_for(ros_node, 0.1)
    spin_until(ros_node, lambda: len(clocks) >= 5, 10, 'five steps')
    stop(sim)
    assert sim.returncode == 0
