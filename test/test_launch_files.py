"""Launch files: every executable is an installed console script, every config file they
name exists; with launch_ros importable, each builds a LaunchDescription.

launch and launch_ros are not available as wheels, so the second part is skipped in the
pip-only environment (see README, "Deployment")."""

from __future__ import annotations

import ast
import importlib.util
import re
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / 'launch').glob('*.launch.py'))
EXPECTED = {'train_dreamer.launch.py', 'train_policy.launch.py', 'sim_record.launch.py', 'deploy_policy.launch.py',
            'gazebo_ugv.launch.py'}
# Nodes and launch files of other packages that launch files may start (gazebo_ugv.launch.py:
# Gazebo through ros_gz, for users with a system ROS 2; not dependencies in package.xml).
EXTERNAL_NODES = {('ros_gz_bridge', 'parameter_bridge'), ('tf2_ros', 'static_transform_publisher')}
EXTERNAL_LAUNCH_FILES = {'gz_sim.launch.py'}  # ros_gz_sim


def console_scripts() -> set:
    tree = ast.parse((REPO / 'setup.py').read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r'\s*(\w+)\s*=\s*[\w.]+:\w+\s*', node.value)
            if m:
                names.add(m.group(1))
    return names


def test_the_launch_files_exist():
    assert EXPECTED <= {p.name for p in LAUNCH_FILES}


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_executables_and_config_files_exist(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    scripts = console_scripts()
    nodes, strings = [], []  # (package, executable) of each Node(...)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node':
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            nodes.append((kw.get('package'), kw.get('executable')))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
    included = [s for s in strings if s.endswith('.launch.py') and s not in EXTERNAL_LAUNCH_FILES]
    assert nodes or included, f'{path.name} starts no node and includes no launch file'
    for name in included:  # an include of another of the package's launch files
        assert (REPO / 'launch' / name).is_file(), f'{path.name}: includes launch/{name}, which does not exist'
    if not nodes:
        return
    executables = [exe for package, exe in nodes if package == 'robot_training']
    foreign = {(package, exe) for package, exe in nodes if package != 'robot_training'}
    assert foreign <= EXTERNAL_NODES, f'{path.name}: nodes of other packages {sorted(foreign - EXTERNAL_NODES)}'
    for exe in executables:
        assert exe in scripts, f'{path.name}: executable {exe!r} is not a console script in setup.py'
    configs = [s for s in strings if re.fullmatch(r'[\w.-]+\.(yaml|xml)', s)]
    assert configs, f'{path.name} names no config file'
    for name in configs:
        assert (REPO / 'config' / name).is_file(), f'{path.name}: config/{name} does not exist'
    assert 'generate_launch_description' in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None,
                    reason='launch_ros is not installed (no wheel; needs a system ROS 2)')
@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_generate_launch_description(path):
    from launch import LaunchDescription

    description = runpy.run_path(str(path))['generate_launch_description']()
    assert isinstance(description, LaunchDescription)


def test_the_loop_launch_file_and_the_online_loop_script_start_the_same_nodes():
    """train_dreamer.launch.py and the pip-only online_loop start one graph: same executables
    under the same node names, reading the same parameters file."""
    from robot_training.online.graph import NODES

    tree = ast.parse((REPO / 'launch' / 'train_dreamer.launch.py').read_text())
    started = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node':
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            started.add((kw['name'], kw['executable']))
    loop = {(name, script) for name, (script, _module) in NODES.items() if name != 'loop_monitor'}
    assert loop <= started, (loop, started)
    assert started - loop == {('trainer', 'trainer')}  # the offline data:= alternative
    assert "'online_loop.yaml'" in (REPO / 'launch' / 'train_dreamer.launch.py').read_text()
    assert "'online_loop.yaml'" in (REPO / 'src' / 'robot_training' / 'online' / 'graph.py').read_text()


def test_the_loop_learner_preset_is_the_same_for_ros2_launch_and_online_loop():
    from robot_training.config import load_config
    from robot_training.online.graph import build_parser

    text = (REPO / 'launch' / 'train_dreamer.launch.py').read_text()
    assert "'preset': ('robot_loop'," in text
    assert build_parser().parse_args([]).preset == 'robot_loop'
    cfg = load_config(preset='robot_loop')
    assert cfg.dreamer.actor_gradient == 'reinforce' and cfg.dreamer.imagine_starts == 128
