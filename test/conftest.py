"""Shared pytest set-up for the robot_training suite.

Every test run gets its own ROS 2 domain, and DDS discovery stays on this machine, so
concurrent runs (and other ROS graphs on the network) never see each other. Child
processes started by the tests inherit both settings.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Domain ids 1..200 are valid for Fast DDS's default port mapping; 0 (the default) is avoided.
os.environ['ROS_DOMAIN_ID'] = os.environ.get(
    'ROBOT_TRAINING_TEST_DOMAIN_ID', str(1 + os.getpid() % 200))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """The repository root (where package.xml and setup.py live)."""
    return REPO_ROOT


@pytest.fixture
def procs():
    """Child processes of a test (output collected), killed when it ends."""
    from ros_helpers import Procs

    p = Procs()
    yield p
    p.close()


@pytest.fixture
def ros_node(request):
    """An rclpy node in the test's own context, for talking to node processes."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node('test_client_' + request.node.name.split('[')[0][:40])
    yield node
    node.destroy_node()
    rclpy.shutdown()
