"""The Gazebo path of the ugv robot, checked statically (the CI machines have no Gazebo).

gazebo/worlds/ugv_arena.sdf, config/gz_bridge_ugv.yaml and launch/gazebo_ugv.launch.py must
give a system-ROS user the topics, types, rates and frames of config/interface_ugv.yaml, the
interface the embedded ugv simulator serves: the world's sensors and drive agree with the
interface, the bridge carries each Gazebo topic of the world under the interface's ROS name
and type, and the launch file starts those files. Nothing here needs Gazebo, ros_gz or launch.
"""

from __future__ import annotations

import ast
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from robot_training.interface.description import load_interface

REPO = Path(__file__).resolve().parents[1]
WORLD = REPO / 'gazebo' / 'worlds' / 'ugv_arena.sdf'
BRIDGE = REPO / 'config' / 'gz_bridge_ugv.yaml'
LAUNCH = REPO / 'launch' / 'gazebo_ugv.launch.py'
INTERFACE = REPO / 'config' / 'interface_ugv.yaml'

# The gz.msgs type ros_gz_bridge pairs with each ROS type used here.
GZ_TYPE = {
    'sensor_msgs/msg/LaserScan': 'gz.msgs.LaserScan',
    'nav_msgs/msg/Odometry': 'gz.msgs.Odometry',
    'sensor_msgs/msg/Imu': 'gz.msgs.IMU',
    'geometry_msgs/msg/Twist': 'gz.msgs.Twist',
    'rosgraph_msgs/msg/Clock': 'gz.msgs.Clock',
    'tf2_msgs/msg/TFMessage': 'gz.msgs.Pose_V',
}
# The interface's observation and action topics, by who provides them in the Gazebo set-up.
FROM_GAZEBO = {'/scan', '/odom', '/imu', '/cmd_vel'}
NOT_FROM_GAZEBO = {'/goal_pose'}  # the waypoint navigator publishes it
WORLD_SYSTEMS = {
    'gz-sim-physics-system': 'gz::sim::systems::Physics',
    'gz-sim-sensors-system': 'gz::sim::systems::Sensors',
    'gz-sim-imu-system': 'gz::sim::systems::Imu',
    'gz-sim-user-commands-system': 'gz::sim::systems::UserCommands',
    'gz-sim-scene-broadcaster-system': 'gz::sim::systems::SceneBroadcaster',
}


# ---------------------------------------------------------------------------- helpers

def text(element: ET.Element, path: str) -> str:
    found = element.find(path)
    assert found is not None and found.text is not None, f'<{element.tag} name={element.get("name")!r}>: no <{path}>'
    return found.text.strip()


def number(element: ET.Element, path: str) -> float:
    return float(text(element, path))


def pose(element: ET.Element) -> list:
    found = element.find('pose')
    return [0.0] * 6 if found is None else [float(v) for v in found.text.split()]


def gz_topic(name: str) -> str:
    """A gz-transport topic as the bridge names it (a relative name is under the root)."""
    return name if name.startswith('/') else '/' + name


@pytest.fixture(scope='module')
def interface():
    return load_interface(str(INTERFACE))


@pytest.fixture(scope='module')
def world() -> ET.Element:
    root = ET.parse(WORLD).getroot()
    assert root.tag == 'sdf' and float(root.get('version')) >= 1.9
    worlds = root.findall('world')
    assert len(worlds) == 1
    return worlds[0]


@pytest.fixture(scope='module')
def ugv(world) -> ET.Element:
    """The one model of the world that has the diff-drive system."""
    models = [m for m in world.findall('model')
              if any(p.get('filename') == 'gz-sim-diff-drive-system' for p in m.findall('plugin'))]
    assert len(models) == 1, 'the world needs exactly one model with gz-sim-diff-drive-system'
    return models[0]


def plugin(model: ET.Element, filename: str, name: str) -> ET.Element:
    found = [p for p in model.findall('plugin') if p.get('filename') == filename]
    assert len(found) == 1, f'the model {model.get("name")} needs one {filename} plugin'
    assert found[0].get('name') == name
    return found[0]


@pytest.fixture(scope='module')
def drive(ugv) -> ET.Element:
    return plugin(ugv, 'gz-sim-diff-drive-system', 'gz::sim::systems::DiffDrive')


@pytest.fixture(scope='module')
def odometry(ugv) -> ET.Element:
    """/odom and /tf come from the odometry publisher: the true motion in 3D, twist in
    base_link, as the embedded robot reports it (the DiffDrive's own odometry has only
    linear.x and angular.z, from the wheels)."""
    return plugin(ugv, 'gz-sim-odometry-publisher-system', 'gz::sim::systems::OdometryPublisher')


def sensor(ugv: ET.Element, kind: str) -> ET.Element:
    found = ugv.findall(f"link/sensor[@type='{kind}']")
    assert len(found) == 1, f'the ugv model needs one {kind} sensor on a link, has {len(found)}'
    return found[0]


@pytest.fixture(scope='module')
def bridge() -> list:
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list) and entries
    keys = {'ros_topic_name', 'gz_topic_name', 'ros_type_name', 'gz_type_name', 'direction'}
    for entry in entries:
        assert isinstance(entry, dict) and keys <= set(entry), f'bridge entry {entry} lacks {keys - set(entry or {})}'
        assert entry['direction'] in {'GZ_TO_ROS', 'ROS_TO_GZ', 'BIDIRECTIONAL'}
    topics = [e['ros_topic_name'] for e in entries]
    assert len(topics) == len(set(topics)), f'a ROS topic bridged twice: {topics}'
    return entries


def bridged(bridge: list, ros_topic: str) -> dict:
    found = [e for e in bridge if e['ros_topic_name'] == ros_topic]
    assert found, f'{BRIDGE.name} does not bridge {ros_topic}'
    return found[0]


# ---------------------------------------------------------------------------- the world

def test_the_world_and_its_systems(world):
    assert world.get('name') == 'ugv_arena'
    assert world.find('physics') is not None
    plugins = {p.get('filename'): p.get('name') for p in world.findall('plugin')}
    for filename, name in WORLD_SYSTEMS.items():
        assert plugins.get(filename) == name, f'world plugin {filename} ({name}) missing'
    names = {m.get('name') for m in world.findall('model')}
    assert 'ground_plane' in names


def test_the_arena_is_8_m_square_with_cylinder_obstacles(world, ugv):
    walls = world.find("model[@name='arena_walls']")
    assert walls is not None and text(walls, 'static') == 'true'
    inner = []  # the inner face of each wall, on its axis
    for collision in walls.findall('link/collision'):
        x, y = pose(collision)[:2]
        sx, sy, _ = (float(v) for v in text(collision, 'geometry/box/size').split())
        inner.append(abs(x) - sx / 2 if abs(x) > abs(y) else abs(y) - sy / 2)
    assert len(inner) == 4 and all(math.isclose(d, 4.0, abs_tol=1e-6) for d in inner)
    obstacles = [m for m in world.findall('model') if m.findtext('static', '').strip() == 'true'
                 and m.find('link/collision/geometry/cylinder') is not None]
    assert len(obstacles) >= 3
    start = pose(ugv)[:2]
    for model in obstacles:
        x, y = pose(model)[:2]
        radius = number(model, 'link/collision/geometry/cylinder/radius')
        assert abs(x) + radius < 4.0 and abs(y) + radius < 4.0, f'{model.get("name")} is not inside the arena'
        assert math.dist((x, y), start) > radius + 0.8, f'{model.get("name")} is on the robot start pose'


def test_the_diff_drive_joints_and_geometry(ugv, drive):
    joints = {j.get('name'): j for j in ugv.findall('joint')}
    links = {link.get('name'): link for link in ugv.findall('link')}
    wheels = []
    for side in ('left_joint', 'right_joint'):
        names = [e.text.strip() for e in drive.findall(side)]
        assert names, f'the diff drive has no <{side}>'
        for name in names:
            assert name in joints, f'diff drive {side} {name!r} is not a joint of the model {ugv.get("name")}'
            joint = joints[name]
            assert joint.get('type') in {'revolute', 'continuous'}
            assert text(joint, 'parent') == 'base_link'
            wheels.append((side, links[text(joint, 'child')]))
    radius = number(drive, 'wheel_radius')
    left_y = [pose(link)[1] for side, link in wheels if side == 'left_joint']
    right_y = [pose(link)[1] for side, link in wheels if side == 'right_joint']
    assert math.isclose(number(drive, 'wheel_separation'), min(left_y) - max(right_y), abs_tol=1e-6)
    for _, link in wheels:
        assert math.isclose(number(link, 'collision/geometry/cylinder/radius'), radius)
        assert math.isclose(pose(ugv)[2] + pose(link)[2], radius), 'the wheels must stand on the floor'
    # its wheel odometry in the frames of REP 105, base_link a link of the model
    assert text(drive, 'frame_id') == 'odom'
    assert text(drive, 'child_frame_id') == 'base_link' and 'base_link' in links
    assert drive.find('topic') is not None


def test_the_odometry_is_base_link_in_odom(ugv, odometry):
    # the odometry publisher reports the model frame: it must be base_link (the canonical,
    # first link, at the model's origin)
    first = ugv.find('link')
    assert first.get('name') == 'base_link' and ugv.get('canonical_link') in (None, 'base_link')
    assert pose(first) == [0.0] * 6
    assert text(odometry, 'odom_frame') == 'odom' and text(odometry, 'robot_base_frame') == 'base_link'
    assert text(odometry, 'dimensions') == '3'


def test_the_diff_drive_limits_are_the_interface_action_limits(drive, interface):
    (v_low, w_low), (v_high, w_high) = interface.action.low, interface.action.high
    assert number(drive, 'min_linear_velocity') == v_low and number(drive, 'max_linear_velocity') == v_high
    assert number(drive, 'min_angular_velocity') == w_low and number(drive, 'max_angular_velocity') == w_high


def test_the_lidar_matches_the_interface_scan(ugv, interface):
    scan = interface.to_dict()['observations'][[s.topic for s in interface.observations].index('/scan')]
    lidar = sensor(ugv, 'gpu_lidar')
    assert int(text(lidar, 'lidar/scan/horizontal/samples')) == scan['num_beams'] == 64
    assert number(lidar, 'lidar/range/max') == scan['range_max'] == 6.0
    assert 0 < number(lidar, 'lidar/range/min') < 0.2
    assert number(lidar, 'update_rate') == interface.control_rate_hz
    # 360 degrees: num_beams steps of 2 pi / num_beams from min_angle, none measured twice
    low, high = number(lidar, 'lidar/scan/horizontal/min_angle'), number(lidar, 'lidar/scan/horizontal/max_angle')
    step = (high - low) / (scan['num_beams'] - 1)
    assert math.isclose(step, 2 * math.pi / scan['num_beams'], rel_tol=1e-5)
    assert math.isclose(low, -math.pi, abs_tol=1e-5)
    assert text(lidar, 'gz_frame_id') == 'base_scan'


def test_the_imu(ugv, interface):
    imu = sensor(ugv, 'imu')
    assert text(imu, 'gz_frame_id') == 'base_link'
    assert number(imu, 'update_rate') >= interface.control_rate_hz


def test_the_odometry_rate_keeps_observations_fresh(odometry, interface):
    assert 1.0 / number(odometry, 'odom_publish_frequency') < interface.max_staleness_s


# ---------------------------------------------------------------------------- the bridge

def test_the_bridge_carries_the_interface_topics_with_their_types(bridge, interface):
    streams = list(interface.observations) + [interface.action]
    topics = {s.topic for s in streams}
    assert topics == FROM_GAZEBO | NOT_FROM_GAZEBO, \
        f'interface topics changed: {sorted(topics)}; say which ones Gazebo provides'
    for stream in streams:
        if stream.topic in NOT_FROM_GAZEBO:
            assert all(e['ros_topic_name'] != stream.topic for e in bridge)
            continue
        entry = bridged(bridge, stream.topic)
        assert entry['ros_type_name'] == stream.msgtype, (stream.topic, entry['ros_type_name'], stream.msgtype)
        assert entry['gz_type_name'] == GZ_TYPE[stream.msgtype]
        expected = 'ROS_TO_GZ' if stream is interface.action else 'GZ_TO_ROS'
        assert entry['direction'] == expected, (stream.topic, entry['direction'])
    for topic in (interface.reward.topic, interface.episodes.topic):
        assert all(e['ros_topic_name'] != topic for e in bridge), f'{topic} cannot come from Gazebo'


def test_the_bridge_carries_clock_and_tf(bridge):
    for topic, ros_type in (('/clock', 'rosgraph_msgs/msg/Clock'), ('/tf', 'tf2_msgs/msg/TFMessage')):
        entry = bridged(bridge, topic)
        assert entry['ros_type_name'] == ros_type and entry['gz_type_name'] == GZ_TYPE[ros_type]
        assert entry['direction'] == 'GZ_TO_ROS'
    for entry in bridge:
        assert GZ_TYPE.get(entry['ros_type_name']) == entry['gz_type_name'], entry


def test_the_bridge_gz_topics_are_the_world_topics(bridge, ugv, drive, odometry):
    world_topics = {
        '/scan': text(sensor(ugv, 'gpu_lidar'), 'topic'),
        '/imu': text(sensor(ugv, 'imu'), 'topic'),
        '/cmd_vel': text(drive, 'topic'),
        '/odom': text(odometry, 'odom_topic'),
        '/tf': text(odometry, 'tf_topic'),
    }
    for ros_topic, sdf_topic in world_topics.items():
        assert gz_topic(bridged(bridge, ros_topic)['gz_topic_name']) == gz_topic(sdf_topic), ros_topic
    assert bridged(bridge, '/clock')['gz_topic_name'] == '/clock'
    # one source of odom -> base_link: the DiffDrive's wheel odometry is elsewhere, not bridged
    wheel = {gz_topic(drive.findtext(tag, f'/model/{ugv.get("name")}/{default}').strip())
             for tag, default in (('odom_topic', 'odometry'), ('tf_topic', 'tf'))}
    assert not wheel & {gz_topic(e['gz_topic_name']) for e in bridge}
    assert not wheel & set(world_topics.values())


# ---------------------------------------------------------------------------- launch and install

def test_the_launch_file_compiles_and_starts_the_gazebo_files():
    source = LAUNCH.read_text()
    tree = ast.parse(source, filename=str(LAUNCH))
    compile(source, str(LAUNCH), 'exec')
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {'ugv_arena.sdf', 'gz_bridge_ugv.yaml', 'interface_ugv.yaml', 'gz_sim.launch.py',
            'parameter_bridge', 'ros_gz_sim', 'policy_server', 'config_file', 'gz_args'} <= strings
    assert 'generate_launch_description' in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'}
    assert {'policy', 'checkpoint'} <= declared
    doc = ast.get_docstring(tree)
    assert '/goal_pose' in doc and '/reward' in doc


def test_the_launch_files_scan_transform_is_the_lidar_pose(ugv):
    tree = ast.parse(LAUNCH.read_text())
    offset = next(n.value.value for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', '') == 'SCAN_OFFSET_Z')
    link = ugv.find("link[@name='base_scan']")
    assert link.find('pose').get('relative_to') == 'base_link'
    assert pose(link) == [0.0, 0.0, float(offset), 0.0, 0.0, 0.0]
    joint = next(j for j in ugv.findall('joint') if text(j, 'child') == 'base_scan')
    assert joint.get('type') == 'fixed' and text(joint, 'parent') == 'base_link'


def test_setup_installs_the_world():
    source = (REPO / 'setup.py').read_text()
    assert re.search(r"'/gazebo/worlds',\s*sorted\(glob\('gazebo/worlds/\*\.sdf'\)\)", source)
    assert WORLD in set((REPO / 'gazebo' / 'worlds').glob('*.sdf'))


def test_the_world_robot_is_the_embedded_robot(ugv, drive):
    """Same wheels, track, lidar mount and beams as the MuJoCo ugv (envs/robots/ugv.py)."""
    embedded = pytest.importorskip('robot_training.envs.robots.ugv')
    assert math.isclose(number(drive, 'wheel_radius'), embedded.WHEEL_RADIUS)
    assert math.isclose(number(drive, 'wheel_separation'), embedded.TRACK_WIDTH)
    assert math.isclose(pose(ugv)[2], embedded.WHEEL_RADIUS)  # base_link on the axle
    assert math.isclose(pose(ugv.find("link[@name='base_scan']"))[2], embedded.SCAN_HEIGHT)
    lidar = sensor(ugv, 'gpu_lidar')
    assert int(text(lidar, 'lidar/scan/horizontal/samples')) == embedded.NUM_BEAMS
    assert math.isclose(number(lidar, 'lidar/scan/horizontal/min_angle'), embedded.SCAN_ANGLE_MIN, abs_tol=1e-5)
    assert math.isclose(number(lidar, 'lidar/scan/horizontal/max_angle'), embedded.SCAN_ANGLE_MAX, abs_tol=1e-5)
    assert math.isclose(number(lidar, 'lidar/range/min'), embedded.SCAN_RANGE_MIN)
