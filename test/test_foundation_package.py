"""The robot_training package is built, installed and declared the way ROS 2 expects.

Looks at the installed result (found through the ament index, so it also works when the
suite is built inside another colcon workspace), not at the build scripts.
"""

import ast
import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ament_index_python.packages import (get_package_prefix, get_package_share_directory,
                                         get_packages_with_prefixes)
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / 'src' / 'robot_training'
PACKAGE = 'robot_training'

# ROS packages that ship Python modules but may not be in this machine's ament index
# (not available as wheels, or optional); imports of these must be declared too.
KNOWN_ROS_PYTHON_PACKAGES = {
    'rclpy', 'launch', 'launch_ros', 'launch_testing', 'launch_testing_ros', 'rosbag2_py',
    'ament_index_python', 'tf2_ros', 'tf2_py', 'tf2_geometry_msgs', 'cv_bridge',
    'message_filters', 'rosidl_runtime_py', 'ros2cli', 'image_geometry', 'image_transport',
    'diagnostic_updater', 'rcl_interfaces', 'lifecycle_msgs', 'rosgraph_msgs',
    'composition_interfaces', 'robot_state_publisher', 'xacro', 'ros_gz', 'gazebo_ros',
}
ROS_NAME_SUFFIXES = ('_msgs', '_srvs', '_interfaces')


def console_scripts():
    """(name, module, function) of every console script declared in setup.py."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
            for kw in node.keywords:
                if kw.arg == 'entry_points':
                    entries = ast.literal_eval(kw.value)['console_scripts']
                    out = []
                    for entry in entries:
                        name, target = (s.strip() for s in entry.split('='))
                        module, func = target.split(':')
                        out.append((name, module, func))
                    return out
    raise AssertionError('setup.py: no setup(entry_points=...) with literal console_scripts')


def module_file(module):
    """The source file of a robot_training module, or None while it does not exist."""
    base = ROOT / 'src' / Path(*module.split('.'))
    for candidate in (base.with_suffix('.py'), base / '__init__.py'):
        if candidate.is_file():
            return candidate
    return None


def runtime_env():
    env = dict(os.environ)
    env.setdefault('MUJOCO_GL', 'egl')
    return env


def test_package_manifests_are_valid():
    for path, build_type in ((ROOT / 'package.xml', 'ament_python'),
                             (ROOT / 'src' / 'robot_training_msgs' / 'package.xml', 'ament_cmake')):
        pkg = parse_package(str(path))  # validates, like colcon and rosdep do
        assert pkg.package_format == 3, f'{path}: format {pkg.package_format}'
        assert pkg.get_build_type() == build_type, f'{path}: build type {pkg.get_build_type()}'


def test_colcon_discovers_both_packages():
    # colcon through this interpreter: a system ROS may have colcon without a `colcon` on PATH
    colcon = [sys.executable, '-c', 'import sys; from colcon_core.command import main; sys.exit(main())']
    out = subprocess.run(colcon + ['list'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = {line.split('\t')[0]: line.split('\t')[-1] for line in out.stdout.splitlines() if '\t' in line}
    assert found.get('robot_training') == '(ros.ament_python)', out.stdout
    assert found.get('robot_training_msgs') == '(ros.ament_cmake)', out.stdout


@pytest.mark.parametrize('name,module,func', console_scripts(), ids=lambda v: str(v))
def test_console_script_installed(name, module, func):
    """Installed where `ros2 run robot_training <name>` looks; runnable once its module exists."""
    script = Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE / name
    assert script.is_file(), f'{script} missing: rebuild (make setup) after changing setup.py'
    assert os.access(script, os.X_OK), f'{script} is not executable'

    if module_file(module) is None:
        return  # the module is not written yet; the installed script is all there is to check
    check = subprocess.run(
        [sys.executable, '-c',
         f'import importlib; m = importlib.import_module({module!r}); '
         f'assert callable(getattr(m, {func!r}, None)), "no callable {func} in {module}"'],
        capture_output=True, text=True, timeout=120, env=runtime_env())
    assert check.returncode == 0, f'{name}: {module}:{func} does not import:\n{check.stderr[-3000:]}'
    if name == 'train':
        run = subprocess.run([str(script), '--help'], capture_output=True, text=True,
                             timeout=120, env=runtime_env())
        assert run.returncode == 0, f'{script} --help exited {run.returncode}:\n{run.stderr[-3000:]}'
        assert run.stdout.strip(), f'{script} --help printed nothing'


def ros_packages_known():
    return set(get_packages_with_prefixes()) | KNOWN_ROS_PYTHON_PACKAGES


def is_ros_package(name, known):
    return name in known or name.endswith(ROS_NAME_SUFFIXES)


def imported_top_level_modules(path):
    """{top-level module: first line number} of the absolute imports in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split('.')[0], node.lineno)
    return found


def test_every_imported_ros_package_is_declared():
    manifest = parse_package(str(ROOT / 'package.xml'))
    declared = {dep.name for dep in manifest.exec_depends}
    known = ros_packages_known()
    missing = {}
    files = sorted(SRC.rglob('*.py'))
    assert files, f'no Python files under {SRC}'
    for path in files:
        for module, line in imported_top_level_modules(path).items():
            if module != PACKAGE and is_ros_package(module, known) and module not in declared:
                missing.setdefault(module, []).append(f'{path.relative_to(ROOT)}:{line}')
    assert not missing, 'ROS packages imported but not declared in package.xml ' \
        '(add <depend> or <exec_depend>):\n' + '\n'.join(
            f'  {module}: imported at {", ".join(where)}' for module, where in sorted(missing.items()))


def test_launch_and_config_installed():
    share = Path(get_package_share_directory(PACKAGE))
    assert (share / 'package.xml').is_file()
    sources = sorted(ROOT.glob('launch/*.py')) + sorted(ROOT.glob('config/*.yaml')) \
        + sorted(ROOT.glob('config/*.xml'))
    problems = []
    for src in sources:
        installed = share / src.parent.name / src.name
        if not installed.is_file():
            problems.append(f'{installed} missing (rebuild: make setup)')
        elif not filecmp.cmp(src, installed, shallow=False):
            problems.append(f'{installed} differs from {src.relative_to(ROOT)}')
    assert not problems, '\n'.join(problems)


@pytest.mark.skipif(not (ROOT / '.venv' / 'bin' / 'python').exists(),
                    reason='no .venv: the suite was built without scripts/setup.sh')
def test_env_sh_serves_python_and_native_processes(tmp_path):
    """From an almost empty environment, `source scripts/env.sh` is enough."""
    typesupport = next((Path(get_package_prefix('robot_training_msgs')) / 'lib').glob(
        'librobot_training_msgs__rosidl_typesupport_fastrtps_c.so'))
    script = (
        f'source {ROOT}/scripts/env.sh || exit 10\n'
        'python -c "import rclpy, robot_training, robot_training_msgs.msg, torch" || exit 11\n'
        'python -m pytest --version >/dev/null || exit 12\n'
        f'ldd {typesupport} | grep "not found" && exit 13\n'
        'exit 0\n')
    env = {'HOME': os.environ.get('HOME', str(tmp_path)), 'PATH': '/usr/bin:/bin'}
    mode = (ROOT / '.venv' / '.robot_training_mode').read_text().split()
    if mode and mode[0] == 'system' and not Path(f'/opt/ros/{mode[1]}/setup.bash').is_file():
        # an underlay outside /opt/ros: env.sh expects it sourced, as in the user's shell
        for name in ('ROS_DISTRO', 'AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH', 'PYTHONPATH',
                     'LD_LIBRARY_PATH', '_ROS_WHEELS_BOOTSTRAP_COMPLETE'):
            if name in os.environ:
                env[name] = os.environ[name]
    run = subprocess.run(['bash', '-c', script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, f'exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}'
