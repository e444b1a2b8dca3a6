"""The fleet's names: every robot-scoped name of an interface moves into the robot's
namespace, the learner's checkpoint topic does not; each robot has its own seed; a fleet's
status is summed (counters) or the worst robot's (costs, gaps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_training.interface.description import load_interface
from robot_training.online.fleet import robot_namespaces, robot_remaps, robot_seed, ros_arguments

CONFIG = Path(__file__).resolve().parents[1] / 'config'


@pytest.mark.parametrize('name', ['interface_inverted_pendulum.yaml', 'interface_ugv.yaml', 'interface_uav.yaml'])
def test_every_topic_of_the_interface_moves_into_the_namespace(name):
    interface = load_interface(CONFIG / name)
    remaps = dict(robot_remaps('robot2', interface))
    topics = [s.topic for s in interface.observations] + [interface.action.topic]
    for topic in topics + ['/clock', '/tf', '/tf_static', f'/world/{interface.name}/reset']:
        assert remaps[topic] == '/robot2' + topic
    assert '/learner/checkpoints' not in remaps  # every actor hot-reloads the same checkpoints
    assert robot_remaps('', interface) == [] and ros_arguments('', interface) == []
    args = ros_arguments('robot2', interface)
    assert args[:2] == ['-r', '__ns:=/robot2'] and f'{interface.action.topic}:=/robot2{interface.action.topic}' in args


def test_namespaces_and_seeds():
    assert robot_namespaces(1) == ['']
    assert robot_namespaces(3) == ['robot1', 'robot2', 'robot3']
    with pytest.raises(ValueError, match='robots must be 1 or more'):
        robot_namespaces(0)
    seeds = [robot_seed(ns) for ns in robot_namespaces(4)]
    assert seeds[0] == robot_seed('') == 0 and len(set(seeds)) == 4


def test_fleet_status_sums_counters_and_keeps_the_worst_cost():
    from robot_training.ros.loop_monitor_node import fleet_total

    total = fleet_total([{'steps': '100', 'held_steps': '1', 'reloads': '3', 'cost_p99_ms': '2.5', 'policy': 'sac'},
                         {'steps': '50', 'held_steps': '0', 'reloads': '2', 'cost_p99_ms': '4.0', 'policy': 'sac'}])
    assert total == {'steps': 150, 'held_steps': 1, 'reloads': 5, 'cost_p99_ms': 4.0, 'policy': 'sac'}


def test_online_loop_puts_each_robot_in_its_namespace_with_its_own_folder_and_seed():
    from robot_training.online.graph import build_parser, node_commands

    commands = node_commands(build_parser().parse_args(['--algorithm', 'sac', '--robots', '2', '--loop-dir', 'L']))
    assert set(commands) == {f'{ns}/{n}' for ns in ('robot1', 'robot2') for n in ('sim', 'policy_server', 'recorder')} \
        | {'learner', 'loop_monitor'}
    recorder = ' '.join(commands['robot2/recorder'])
    assert '__ns:=/robot2' in recorder and '/joint_states:=/robot2/joint_states' in recorder
    assert 'dataset_dir:=L/dataset/robot2' in recorder
    assert 'seed:=1000000' in ' '.join(commands['robot2/sim'])
    assert '__ns' not in ' '.join(commands['learner']) and 'data:=L/dataset' in ' '.join(commands['learner'])
    assert 'robot_namespaces:=robot1,robot2' in ' '.join(commands['loop_monitor'])


def test_the_loop_launch_file_builds_the_fleet_from_the_same_functions():
    text = (Path(__file__).resolve().parents[1] / 'launch' / 'train_dreamer.launch.py').read_text()
    assert "'robots': ('1'," in text
    for name in ('robot_namespaces', 'robot_remaps', 'robot_seed'):
        assert f'{name}(' in text


def test_the_fleet_command_prints_one_robots_ros_arguments(capsys):
    from robot_training.online.fleet import main

    assert main(['robot2', '--interface-file', str(CONFIG / 'interface_ugv.yaml')]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == '--ros-args' and '__ns:=/robot2' in out and '/scan:=/robot2/scan' in out and 'seed:=1000000' in out
    assert main(['robot2', '--interface-file', 'missing.yaml']) == 2
    assert 'not found' in capsys.readouterr().err
