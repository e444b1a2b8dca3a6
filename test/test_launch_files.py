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
EXPECTED = {'train_dreamer.launch.py', 'sim_record.launch.py', 'deploy_policy.launch.py'}


def console_scripts() -> set:
    tree = ast.parse((REPO / 'setup.py').read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r'\s*(\w+)\s*=\s*[\w.]+:\w+\s*', node.value)
            if m:
                names.add(m.group(1))
    return names


def test_the_three_launch_files_exist():
    assert EXPECTED <= {p.name for p in LAUNCH_FILES}


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_executables_and_config_files_exist(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    scripts = console_scripts()
    executables, packages, strings = [], [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
            if node.arg == 'executable':
                executables.append(node.value.value)
            elif node.arg == 'package':
                packages.append(node.value.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
    assert executables, f'{path.name} starts no node'
    assert set(packages) == {'robot_training'}
    for exe in executables:
        assert exe in scripts, f'{path.name}: executable {exe!r} is not a console script in setup.py'
    configs = [s for s in strings if re.fullmatch(r'[\w.-]+\.(yaml|xml)', s)]
    if path.name != 'train_dreamer.launch.py':
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
