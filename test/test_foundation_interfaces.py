"""Every message and service of robot_training_msgs round-trips through rclpy.

The interface files are read from src/robot_training_msgs/{msg,srv}, so an interface that
is added there but not to CMakeLists.txt fails here. For each one a second process (this
file run as a script) is started on the same ROS domain over Fast DDS:

* messages: the test publishes a sample in which every field holds a non-default value;
  the peer republishes what it received; the echo must equal the sample field for field.
* services: the peer checks the request field for field and answers with a sample
  response; the test checks that response field for field.

Run as a script, this file is the peer: `python test_foundation_interfaces.py echo|serve
<package/kind/Type> <name>`.
"""

import array
import importlib
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTERFACE_DIR = ROOT / 'src' / 'robot_training_msgs'
PACKAGE = 'robot_training_msgs'
MSG_NAMES = sorted(p.stem for p in (INTERFACE_DIR / 'msg').glob('*.msg'))
SRV_NAMES = sorted(p.stem for p in (INTERFACE_DIR / 'srv').glob('*.srv'))

PEER_START_TIMEOUT = 30.0
ROUND_TRIP_TIMEOUT = 30.0
REQUEST_SEED = 3
RESPONSE_SEED = 7

# The contract of the issue: fields that other packages of the suite rely on.
REQUIRED_FIELDS = {
    'TrainingProgress': {'header', 'run_id', 'algorithm', 'mode', 'step', 'total_steps',
                         'epoch', 'elapsed_sec', 'remaining_sec', 'status', 'metrics'},
    'Checkpoint': {'header', 'run_id', 'algorithm', 'step', 'path', 'sha256',
                   'interface_fingerprint', 'metrics'},
    'EpisodeEvent': {'header', 'episode_id', 'event', 'episode_return', 'length',
                     'success', 'reason'},
    'MetricValue': {'name', 'value'},
}
REQUIRED_CONSTANTS = {
    'TrainingProgress': ['STATUS_STARTING', 'STATUS_RUNNING', 'STATUS_FINISHED', 'STATUS_FAILED'],
    'EpisodeEvent': ['EVENT_START', 'EVENT_END', 'EVENT_RESET'],
}

_INT_BITS = {'int8': 8, 'uint8': 8, 'int16': 16, 'uint16': 16, 'int32': 32, 'uint32': 32,
             'int64': 64, 'uint64': 64}


def import_type(full_name):
    """'pkg/msg/Type' -> the generated class."""
    package, kind, name = full_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def fields_of(cls):
    """(field name, rosidl_parser type) pairs of a generated message class."""
    return list(zip(cls.get_fields_and_field_types().keys(), cls.SLOT_TYPES))


def sample_value(slot_type, seed, name):
    """A value of slot_type that differs from the type's default and depends on seed."""
    from rosidl_parser import definition as d

    if isinstance(slot_type, d.BasicType):
        t = slot_type.typename
        if t == 'boolean':
            return True
        if t in ('float', 'double', 'float32', 'float64'):
            return -1.5 - seed  # exactly representable in float32 and float64
        if t == 'octet':
            return bytes([200 + seed % 50])
        if t == 'char':
            return chr(65 + seed % 26)
        bits, offset = _INT_BITS[t], seed % 64
        if t.startswith('u'):
            return 2 ** bits - 1 - offset  # near the maximum: catches a narrowed field
        return -(2 ** (bits - 1)) + 1 + offset  # near the minimum: catches sign loss
    if isinstance(slot_type, (d.UnboundedString, d.BoundedString,
                              d.UnboundedWString, d.BoundedWString)):
        text = f'{name}-{seed}-ünïcødé✓'
        limit = getattr(slot_type, 'maximum_size', None)
        return text[:limit] if limit else text
    if isinstance(slot_type, d.NamespacedType):
        return sample_message(import_type('/'.join(slot_type.namespaces + [slot_type.name])), seed + 1)
    if isinstance(slot_type, d.Array):
        count = slot_type.size
    elif isinstance(slot_type, d.AbstractSequence):
        count = 3
        if isinstance(slot_type, d.BoundedSequence):
            count = min(count, slot_type.maximum_size)
    else:
        raise TypeError(f'field {name}: no sample for {slot_type!r}; extend sample_value()')
    return [sample_value(slot_type.value_type, seed + i + 1, name) for i in range(count)]


def sample_message(cls, seed=0):
    """An instance of cls in which every field is set to a non-default value."""
    msg = cls()
    for index, (name, slot_type) in enumerate(fields_of(cls)):
        setattr(msg, name, sample_value(slot_type, seed + 11 * index, name))
    return msg


def to_plain(value):
    """Messages, numpy arrays and array.array as dicts and lists, for comparison."""
    if hasattr(value, 'get_fields_and_field_types'):
        return {name: to_plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array)):
        return [to_plain(v) for v in value]
    if hasattr(value, 'tolist'):  # numpy arrays and scalars
        return to_plain(value.tolist())
    return value


def differences(expected, actual, path=''):
    """Paths at which two plain values differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            out += differences(expected.get(key, '<missing>'), actual.get(key, '<missing>'),
                               f'{path}.{key}' if path else key)
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += differences(e, a, f'{path}[{i}]')
        return out
    return [] if expected == actual else [f'{path}: sent {expected!r}, got {actual!r}']


def reliable_qos():
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


# --------------------------------------------------------------------------- the peer

def run_peer(role, type_name, name):
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node

    rclpy.init()
    node = Node(f'foundation_peer_{os.getpid()}')
    cls = import_type(type_name)
    if role == 'echo':
        pub = node.create_publisher(cls, name + '/out', reliable_qos())
        node.create_subscription(cls, name + '/in', pub.publish, reliable_qos())
    elif role == 'serve':
        def handle(request, response):
            wrong = differences(to_plain(sample_message(cls.Request, REQUEST_SEED)), to_plain(request))
            if wrong:
                print('request differs: ' + '; '.join(wrong), file=sys.stderr, flush=True)
                return response  # a default response: the test's comparison fails
            return sample_message(cls.Response, RESPONSE_SEED)
        node.create_service(cls, name, handle)
    else:
        raise SystemExit(f'unknown role {role}')
    print('READY', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# --------------------------------------------------------------------------- the tests

@pytest.fixture(scope='module')
def node():
    import rclpy
    from rclpy.node import Node
    rclpy.init()
    n = Node(f'foundation_test_{os.getpid()}')
    yield n
    n.destroy_node()
    rclpy.try_shutdown()


def start_peer(role, type_name, name):
    proc = subprocess.Popen(
        [sys.executable, __file__, role, type_name, name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PEER_START_TIMEOUT
    line = ''
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            break
    sel.close()
    if line.strip() != 'READY':
        stop_peer(proc)
        pytest.fail(f'peer {role} {type_name} did not start: {proc.stderr.read()[-3000:]}')
    return proc


def stop_peer(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stderr.read()[-3000:] if proc.stderr else ''


def topic_name(kind, type_name):
    return f'/foundation_test_{os.getpid()}/{kind}/{type_name}'


def test_interface_files_found():
    assert {'TrainingProgress', 'Checkpoint', 'EpisodeEvent'} <= set(MSG_NAMES)
    assert 'LoadPolicy' in SRV_NAMES


@pytest.mark.parametrize('name', sorted(REQUIRED_FIELDS))
def test_message_contract(name):
    cls = import_type(f'{PACKAGE}/msg/{name}')
    missing = REQUIRED_FIELDS[name] - set(cls.get_fields_and_field_types())
    assert not missing, f'{name} lacks fields {sorted(missing)}'
    constants = [getattr(cls, c) for c in REQUIRED_CONSTANTS.get(name, [])]
    assert len(set(constants)) == len(constants), f'{name} constants are not distinct: {constants}'


def test_load_policy_contract():
    cls = import_type(f'{PACKAGE}/srv/LoadPolicy')
    assert 'checkpoint_path' in cls.Request.get_fields_and_field_types()
    assert {'success', 'message'} <= set(cls.Response.get_fields_and_field_types())


@pytest.mark.parametrize('name', MSG_NAMES)
def test_sample_sets_every_field(name):
    """Guards the round trip: a field left at its default would not prove anything."""
    cls = import_type(f'{PACKAGE}/msg/{name}')
    default, sample = to_plain(cls()), to_plain(sample_message(cls))
    same = [field for field in default if default[field] == sample[field]]
    assert not same, f'sample of {name} leaves {same} at the default'


@pytest.mark.parametrize('name', MSG_NAMES)
def test_message_round_trip(node, name):
    import rclpy
    type_name = f'{PACKAGE}/msg/{name}'
    cls = import_type(type_name)
    topic = topic_name('msg', name)
    sent = sample_message(cls, seed=5)
    received = []
    pub = node.create_publisher(cls, topic + '/in', reliable_qos())
    sub = node.create_subscription(cls, topic + '/out', received.append, reliable_qos())
    peer = start_peer('echo', type_name, topic)
    try:
        deadline = time.monotonic() + ROUND_TRIP_TIMEOUT
        next_publish = 0.0
        while not received and time.monotonic() < deadline and peer.poll() is None:
            if time.monotonic() >= next_publish:
                pub.publish(sent)
                next_publish = time.monotonic() + 0.25
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        peer_err = stop_peer(peer)
        node.destroy_publisher(pub)
        node.destroy_subscription(sub)
    assert received, f'no echo of {type_name} within {ROUND_TRIP_TIMEOUT}s; peer stderr: {peer_err}'
    wrong = differences(to_plain(sent), to_plain(received[0]))
    assert not wrong, f'{type_name} changed on the round trip: ' + '; '.join(wrong)


@pytest.mark.parametrize('name', SRV_NAMES)
def test_service_round_trip(node, name):
    import rclpy
    type_name = f'{PACKAGE}/srv/{name}'
    cls = import_type(type_name)
    service = topic_name('srv', name)
    client = node.create_client(cls, service)
    peer = start_peer('serve', type_name, service)
    try:
        deadline = time.monotonic() + ROUND_TRIP_TIMEOUT
        while not client.service_is_ready() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert client.service_is_ready(), f'service {service} not discovered within {ROUND_TRIP_TIMEOUT}s'
        # A request sent right after discovery can be lost while the server's reply writer is
        # still matching the client's reader (a known DDS race): ask again every 2 s.
        futures = []
        while time.monotonic() < deadline and not any(f.done() for f in futures):
            futures.append(client.call_async(sample_message(cls.Request, REQUEST_SEED)))
            rclpy.spin_until_future_complete(node, futures[-1], timeout_sec=2.0)
        done = [f for f in futures if f.done()]
        assert done, f'no response from {service} to {len(futures)} requests'
        response = done[0].result()
    finally:
        peer_err = stop_peer(peer)
        node.destroy_client(client)
    wrong = differences(to_plain(sample_message(cls.Response, RESPONSE_SEED)), to_plain(response))
    assert not wrong, f'{type_name} response changed: ' + '; '.join(wrong) + f'; peer stderr: {peer_err}'


if __name__ == '__main__':
    run_peer(*sys.argv[1:4])
