"""Simulator node as a real process over real DDS: observations, reward, episode events,
/clock, world reset/pause services, SIGTERM.

Every process runs in the session's ROS domain (conftest.py) and is killed at the end of its test.
"""

from __future__ import annotations

import signal
import subprocess

from ros_helpers import INTERFACE, call, node_cmd, spin_for, spin_until, stop


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
    # InvertedPendulum-v5 pays 1 per step while the pole stands and 0 on the step it falls
    assert any(r.data == 1.0 for r in got['rew']) and all(r.data in (0.0, 1.0) for r in got['rew'])
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


def test_parameters_are_described_and_read_only(procs, ros_node):
    """A runtime `ros2 param set` is refused (the node reads its parameters once), and
    `ros2 param describe` shows each parameter's description."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, SetParameters

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}'))
    described = call(ros_node, DescribeParameters, '/sim/describe_parameters',
                     DescribeParameters.Request(names=['real_time_factor']))
    assert 'simulated seconds per wall-clock second' in described.descriptors[0].description
    assert described.descriptors[0].read_only
    (limits,) = described.descriptors[0].floating_point_range
    assert (limits.from_value, limits.to_value) == (0.001, 1000.0)
    request = SetParameters.Request(parameters=[Parameter(
        name='real_time_factor', value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=4.0))])
    result = call(ros_node, SetParameters, '/sim/set_parameters', request).results[0]
    assert not result.successful and 'read-only' in result.reason
    stop(sim)
    assert sim.returncode == 0
    # a value out of its declared range, given at start: one line naming parameter and range
    bad = subprocess.run(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'real_time_factor:=-1.0'),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr + bad.stdout
    assert 'parameter real_time_factor: -1.0 is out of range (must be from 0.001 to 1000.0' in bad.stderr + bad.stdout


def test_sim_waits_for_its_subscribers_before_the_first_episode(procs, ros_node):
    """wait_for_subscribers (the loop: 2): nothing is simulated, not even the clock, until the
    observation topic and the command topic have that many subscribers each (actor and recorder;
    the simulator and the recorder); then the first episode starts with its START event, so no
    episode goes unanswered or unrecorded."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from robot_training_msgs.msg import EpisodeEvent

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'wait_for_subscribers:=2'))
    got = {'clock': [], 'ev': [], 'js': []}
    ros_node.create_subscription(Clock, '/clock', got['clock'].append, 10)
    ros_node.create_subscription(EpisodeEvent, '/episode_event', got['ev'].append, 10)
    spin_until(ros_node, lambda: any('/joint_states, /cmd have 2 subscribers each' in line for line in sim.lines),
               30, 'the sim to start')
    spin_for(ros_node, 1.5)
    assert got['clock'] == [] and got['ev'] == []  # waiting: no step, no episode
    ros_node.create_subscription(JointState, '/joint_states', got['js'].append, 10)
    ros_node.create_subscription(JointState, '/joint_states', lambda _m: None, 10)  # the second node, say
    spin_for(ros_node, 1.0)
    assert got['js'] == []  # the command topic has only the simulator's own subscription
    ros_node.create_subscription(Float64MultiArray, '/cmd', lambda _m: None, 10)  # the recorder's
    spin_until(ros_node, lambda: len(got['js']) >= 5, 20, 'observations once subscribed')
    assert got['ev'] and got['ev'][0].event == EpisodeEvent.EVENT_START and got['ev'][0].episode_id == 0
    assert got['clock']
    stop(sim)
    assert sim.returncode == 0


def test_sim_holds_the_first_episode_until_a_first_command(procs, ros_node):
    """wait_for_command (the loop: true), timer mode: the first episode stays at its first
    observation, sent again every command_timeout_s with the same stamp, until a command
    arrives; then the simulator steps at its rate, holding the last command as before."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'wait_for_command:=true',
                               'command_timeout_s:=0.2', 'max_episode_steps:=400'))
    got = {'clock': [], 'js': []}
    ros_node.create_subscription(Clock, '/clock', got['clock'].append, 10)
    ros_node.create_subscription(JointState, '/joint_states', got['js'].append, 10)
    spin_until(ros_node, lambda: len(got['js']) >= 3, 30, 'the first observation, sent again')
    spin_for(ros_node, 1.0)  # 25 steps at 25 Hz, had it stepped
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got['js']}
    assert len(got['js']) >= 5 and len(stamps) == 1, stamps  # one observation, repeated
    assert len(got['clock']) <= 1  # the reset's clock, no step
    assert any('first step once a command arrives on /cmd' in line for line in sim.lines), sim.lines
    cmd = ros_node.create_publisher(Float64MultiArray, '/cmd', 10)
    spin_until(ros_node, lambda: cmd.get_subscription_count() > 0, 30, 'the sim subscribing /cmd')
    cmd.publish(Float64MultiArray(data=[0.0]))  # one command: timer stepping holds it from then on
    before = len(got['clock'])
    spin_for(ros_node, 1.0)
    assert len(got['clock']) - before >= 10  # steps at its rate without further commands
    ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in got['clock'][before:]]
    assert all(b - a == 40_000_000 for a, b in zip(ns, ns[1:]))
    n = len(got['js'])
    spin_for(ros_node, 0.5)
    assert len({(m.header.stamp.sec, m.header.stamp.nanosec) for m in got['js'][n:]}) == len(got['js'][n:])  # no repeats
    stop(sim)
    assert sim.returncode == 0


def test_realtime_priority_puts_every_thread_of_the_node_under_fifo(procs, ros_node):
    """realtime_priority (the loop: 10): every thread of the running node, DDS's included, is
    SCHED_FIFO at that priority; where the OS refuses, one warning says why and the node runs on
    at normal priority."""
    import os

    from test_priority import _can_use_fifo

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'realtime_priority:=10'))
    spin_until(ros_node, lambda: any('realtime_priority 10 not applied' in line or 'SCHED_FIFO priority 10' in line
                                     for line in sim.lines), 60, 'the sim to start')
    tids = [int(t) for t in os.listdir(f'/proc/{sim.pid}/task')]
    assert len(tids) > 3  # Python's main thread and the middleware's
    policies = {os.sched_getscheduler(t) for t in tids}
    if _can_use_fifo():
        assert policies == {os.SCHED_FIFO}, policies
        assert {os.sched_getparam(t).sched_priority for t in tids} == {10}
        assert any('running under SCHED_FIFO priority 10' in line for line in sim.lines)
    else:
        assert policies == {os.SCHED_OTHER}
        assert any('realtime_priority 10 not applied, normal priority kept: not permitted' in line
                   for line in sim.lines), sim.lines
    stop(sim)
    assert sim.returncode == 0
