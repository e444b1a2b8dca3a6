"""The house's import boundaries, read from the source (no import runs):

* only ``ros/`` imports rclpy and ROS message / service packages;
* the core never imports ``ros/`` (the seed's ``utils/data_collection`` shim names it lazily);
* layers import downwards only: a module may import its own layer and those below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'src' / 'robot_training'

#: bottom to top; a module may import modules of its own rank or lower
LAYERS = [
    ('utils',),                                   # logging, files, seeding, precision, stopping
    ('config', 'checkpoint', 'networks', 'algorithms', 'learner'),  # the registry (names, no imports); the protocol
    ('interface', 'data', 'recording'),           # the interface contract; trajectories, replay, bags
    ('envs',),                                    # environments, factories, collection
    ('policies', 'world_models'),                 # model-free learners; the world model
    ('supervised_learning', 'reinforcement_learning'),
    ('deploy',),                                  # acting with a trained policy
    ('online', 'scenarios'),                      # the learning loop; waypoint missions with a policy
    ('train', 'bags'),                            # command lines
    ('ros',),                                     # the ROS layer: nodes
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

#: the seed's import paths kept as re-exports: imports and __getattr__ only, layers exempt
SEED_SHIMS = {'utils/data_collection.py', 'reinforcement_learning/environments.py'}

ROS_PACKAGES = {'rclpy', 'rosidl_runtime_py', 'std_msgs', 'std_srvs', 'sensor_msgs', 'geometry_msgs', 'nav_msgs',
                'rosgraph_msgs', 'builtin_interfaces', 'rcl_interfaces', 'lifecycle_msgs', 'tf2_msgs',
                'trajectory_msgs', 'diagnostic_msgs', 'robot_training_msgs', 'launch', 'launch_ros'}


def modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        rel = path.relative_to(PACKAGE).as_posix()
        yield rel, ast.parse(path.read_text(), rel)


def layer_of(rel: str) -> str:
    first = rel.split('/')[0]
    return first[:-3] if first.endswith('.py') else first


def imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def test_every_module_has_a_layer():
    missing = sorted({layer_of(rel) for rel, _ in modules()} - set(RANK) - {'__init__'})
    assert not missing, f'add these to LAYERS: {missing}'


def test_only_the_ros_layer_imports_ros_packages():
    found = [f'{rel}:{line} imports {name}' for rel, tree in modules() if layer_of(rel) != 'ros'
             for line, name in imports(tree) if name.split('.')[0] in ROS_PACKAGES]
    assert not found, '\n'.join(found)


def test_the_core_never_imports_the_ros_layer():
    found = [f'{rel}:{line} imports {name}' for rel, tree in modules()
             if layer_of(rel) != 'ros' and rel not in SEED_SHIMS
             for line, name in imports(tree) if name.startswith('robot_training.ros')]
    assert not found, '\n'.join(found)


def test_layers_import_downwards_only():
    found = []
    for rel, tree in modules():
        own = layer_of(rel)
        if rel in SEED_SHIMS or own == '__init__':
            continue
        for line, name in imports(tree):
            parts = name.split('.')
            if parts[0] != 'robot_training' or len(parts) < 2 or parts[1] not in RANK:
                continue
            if RANK[parts[1]] > RANK[own]:
                found.append(f'{rel}:{line} ({own}, layer {RANK[own]}) imports {name} (layer {RANK[parts[1]]})')
    assert not found, '\n'.join(found)


@pytest.mark.parametrize('rel', sorted(SEED_SHIMS))
def test_seed_shims_only_re_export(rel):
    tree = ast.parse((PACKAGE / rel).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    allowed = (ast.Import, ast.ImportFrom, ast.Assign)
    extra = [n for n in body if not isinstance(n, allowed)
             and not (isinstance(n, ast.FunctionDef) and n.name == '__getattr__')]
    assert not extra, f'{rel} holds code ({[type(n).__name__ for n in extra]}); it should only re-export'
