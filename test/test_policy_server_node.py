"""Policy server and simulator as real processes over real DDS, with a tiny trained PPO:
the pendulum receives actions within limits, episodes run, a junk checkpoint sent to
~/load_policy is refused while the old policy keeps acting, stale observations stop the
commands, SIGINT ends both nodes cleanly.
"""

from __future__ import annotations

import torch

from ros_helpers import INTERFACE, call, node_cmd, spin_for, spin_until, stop
from test_deploy import tiny_policy

torch.set_num_threads(1)


def test_policy_drives_the_sim_and_survives_a_bad_load(tmp_path, procs, ros_node):
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool

    from robot_training_msgs.msg import EpisodeEvent
    from robot_training_msgs.srv import LoadPolicy

    checkpoint = tiny_policy(tmp_path)
    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'max_episode_steps:=25'))
    server = procs.start(node_cmd('policy_server_node', f'interface_file:={INTERFACE}',
                                  f'checkpoint:={checkpoint}', 'warn_period_s:=0.5'))
    cmds, events = [], []
    ros_node.create_subscription(Float64MultiArray, '/cmd', cmds.append, 100)
    ros_node.create_subscription(EpisodeEvent, '/episode_event', events.append, 10)

    spin_until(ros_node, lambda: len(cmds) >= 30, 60, '30 commands')
    spin_until(ros_node, lambda: any(e.event == EpisodeEvent.EVENT_END for e in events), 30, 'an episode end')
    assert all(len(c.data) == 1 and -3.0 <= c.data[0] <= 3.0 for c in cmds)

    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint at all')
    reply = call(ros_node, LoadPolicy, '/policy_server/load_policy', LoadPolicy.Request(checkpoint_path=str(junk)))
    assert not reply.success and 'previous policy kept' in reply.message and 'junk.pt' in reply.message
    count = len(cmds)
    spin_until(ros_node, lambda: len(cmds) >= count + 10, 20, 'commands after the refused load')
    reply = call(ros_node, LoadPolicy, '/policy_server/load_policy',
                 LoadPolicy.Request(checkpoint_path=str(checkpoint)))
    assert reply.success, reply.message

    # the sim pauses: its observations go stale and the server stops commanding
    assert call(ros_node, SetBool, '/world/inverted_pendulum/pause', SetBool.Request(data=True)).success
    spin_for(ros_node, 0.5)
    count = len(cmds)
    spin_for(ros_node, 1.0)
    assert len(cmds) == count
    out = stop(server)
    assert server.returncode == 0, out
    assert 'not acting (stale)' in out and "ticks {'ok'" in out
    stop(sim)
    assert sim.returncode == 0


def test_bad_checkpoint_at_start_fails_clearly(tmp_path, procs):
    server = procs.start(node_cmd('policy_server_node', f'interface_file:={INTERFACE}',
                                  f'checkpoint:={tmp_path / "missing.pt"}'))
    server.wait(timeout=60)
    server.pump.join(timeout=5)
    assert server.returncode == 2
    assert 'checkpoint not found' in '\n'.join(server.lines)


def test_lifecycle_transitions_gate_the_actions(tmp_path, procs, ros_node):
    """``autostart:=false``: the server waits unconfigured; configure loads (a bad checkpoint
    fails the transition and leaves it unconfigured), activate acts, deactivate stops acting
    while observations still arrive, cleanup then configure and activate act again."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from std_msgs.msg import Float64MultiArray

    def state():
        return call(ros_node, GetState, '/policy_server/get_state', GetState.Request()).current_state.id

    def change(transition):
        return call(ros_node, ChangeState, '/policy_server/change_state',
                    ChangeState.Request(transition=Transition(id=transition))).success

    sim = procs.start(node_cmd('sim_node', f'interface_file:={INTERFACE}', 'max_episode_steps:=50'))
    server = procs.start(node_cmd('policy_server_node', f'interface_file:={INTERFACE}', 'autostart:=false',
                                  f'checkpoint:={tmp_path / "missing.pt"}'))
    cmds = []
    ros_node.create_subscription(Float64MultiArray, '/cmd', cmds.append, 100)
    spin_until(ros_node, lambda: ros_node.count_publishers('/joint_states') > 0, 60, 'the simulator')
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not change(Transition.TRANSITION_CONFIGURE)  # missing checkpoint: refused, stays unconfigured
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert any('configure failed' in line and 'missing.pt' in line for line in server.lines)
    stop(server)

    # parameters are read-only: a second server, with a good checkpoint
    server = procs.start(node_cmd('policy_server_node', f'interface_file:={INTERFACE}', 'autostart:=false',
                                  f'checkpoint:={tiny_policy(tmp_path)}'))
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    spin_for(ros_node, 1.0)
    assert not cmds  # nobody commands the pendulum
    assert change(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
    spin_for(ros_node, 1.0)
    assert not cmds, 'an inactive server published actions'
    assert change(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
    spin_until(ros_node, lambda: len(cmds) >= 10, 30, 'actions once active')
    assert change(Transition.TRANSITION_DEACTIVATE)
    spin_for(ros_node, 0.3)
    count = len(cmds)
    spin_for(ros_node, 1.0)
    assert len(cmds) == count, 'a deactivated server kept acting'
    assert change(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
    assert change(Transition.TRANSITION_CONFIGURE) and change(Transition.TRANSITION_ACTIVATE)
    spin_until(ros_node, lambda: len(cmds) >= count + 10, 30, 'actions after cleanup, configure, activate')
    out = stop(server)
    assert server.returncode == 0, out
    stop(sim)
