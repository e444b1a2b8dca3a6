"""A robot's sensor readings as the ROS messages a Gazebo + ``ros_gz_bridge`` robot publishes.

The simulator node serves the embedded robots (:mod:`robot_training.envs.robots`) with full
messages, whatever part of them an interface description reads: an Odometry carries pose
and twist, a LaserScan its angles and limits, the goal a ``PoseStamped`` in ``base_link``.
So an interface description written against the embedded robot works against Gazebo, and a
recording shows what a real robot's recording would.

Plain Python: message classes come in as factories (rclpy classes in the node, the rosbags
factory in tests). ``/tf`` needs ``tf2_msgs``, which the pip-only set-up lacks (no wheel):
:func:`transforms` gives the ``TransformStamped`` list and the node publishes it where
``tf2_msgs`` imports.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Tuple

import numpy as np

from robot_training.interface.converters import _assign_sequence, set_stamp
from robot_training.envs.robots.base import BASE_FRAME, CAMERA_FRAME, ODOM_FRAME, SCAN_FRAME, RobotState

Factory = Callable[[], Any]


def _vec3(target, values) -> None:
    target.x, target.y, target.z = (float(v) for v in values[:3])


def _quat(target, values) -> None:
    target.x, target.y, target.z, target.w = (float(v) for v in values[:4])


def _header(msg, frame: str, stamp_ns: int) -> None:
    msg.header.frame_id = frame
    set_stamp(msg, stamp_ns)


def odometry(state: RobotState, factory: Factory, stamp_ns: int, period_s: float) -> Any:
    msg = factory()
    _header(msg, ODOM_FRAME, stamp_ns)
    msg.child_frame_id = BASE_FRAME
    _vec3(msg.pose.pose.position, state.position)
    _quat(msg.pose.pose.orientation, state.orientation)
    _vec3(msg.twist.twist.linear, state.linear_velocity)
    _vec3(msg.twist.twist.angular, state.angular_velocity)
    return msg


def imu(state: RobotState, factory: Factory, stamp_ns: int, period_s: float) -> Any:
    msg = factory()
    _header(msg, BASE_FRAME, stamp_ns)
    _quat(msg.orientation, state.orientation)
    _vec3(msg.angular_velocity, state.angular_velocity)
    _vec3(msg.linear_acceleration, state.linear_acceleration)
    return msg


def _sensor_message(reading, missing: str, dtype, factory: Factory, frame: str,
                    stamp_ns: int) -> Tuple[np.ndarray, Any]:
    """``(reading as a contiguous array, a new message stamped in the sensor's frame)``;
    ``ValueError(missing)`` when the robot has no such sensor (``reading`` None)."""
    if reading is None:
        raise ValueError(missing)
    msg = factory()
    _header(msg, frame, stamp_ns)
    return np.ascontiguousarray(reading, dtype=dtype), msg


def laser_scan(state: RobotState, factory: Factory, stamp_ns: int, period_s: float) -> Any:
    ranges, msg = _sensor_message(state.scan, "this robot has no rangefinder: the interface's LaserScan stream "
                                  "cannot be served", np.float32, factory, SCAN_FRAME, stamp_ns)
    msg.angle_min, msg.angle_max = float(state.scan_angle_min), float(state.scan_angle_max)
    msg.angle_increment = float((state.scan_angle_max - state.scan_angle_min) / max(len(ranges) - 1, 1))
    msg.time_increment = 0.0
    msg.scan_time = float(period_s)
    msg.range_min, msg.range_max = float(state.scan_range_min), float(state.scan_range_max)
    _assign_sequence(msg, "ranges", ranges)
    return msg


def goal_pose(state: RobotState, factory: Factory, stamp_ns: int, period_s: float) -> Any:
    """The next waypoint relative to the robot (frame ``base_link``)."""
    msg = factory()
    _header(msg, BASE_FRAME, stamp_ns)
    _vec3(msg.pose.position, state.goal)
    msg.pose.orientation.w = 1.0
    return msg


def image(state: RobotState, factory: Factory, stamp_ns: int, period_s: float) -> Any:
    pixels, msg = _sensor_message(state.image, "this robot has no camera (make the env with camera: true)",
                                  np.uint8, factory, CAMERA_FRAME, stamp_ns)
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, int(pixels.shape[1] * 3)
    current = msg.data
    msg.data = pixels.reshape(-1) if isinstance(current, np.ndarray) else pixels.tobytes()
    return msg


#: message type → builder of that message from a RobotState
BUILDERS: Dict[str, Callable[..., Any]] = {
    "nav_msgs/msg/Odometry": odometry,
    "sensor_msgs/msg/Imu": imu,
    "sensor_msgs/msg/LaserScan": laser_scan,
    "geometry_msgs/msg/PoseStamped": goal_pose,
    "sensor_msgs/msg/Image": image,
}


def check_servable(streams: Iterable[Tuple[str, str]], robot: str) -> None:
    """Raise ValueError naming the first (topic, type) this robot's simulator cannot publish."""
    for topic, msgtype in streams:
        if msgtype not in BUILDERS:
            raise ValueError(f"the embedded {robot} publishes {', '.join(sorted(BUILDERS))}; the interface's "
                             f"{topic} is a {msgtype}")


def robot_messages(state: RobotState, streams: Iterable[Tuple[str, str]], factories: Dict[str, Factory],
                   stamp_ns: int, period_s: float) -> Dict[str, Any]:
    """``{topic: message}`` for every ``(topic, type)`` stream that has a factory."""
    out = {}
    for topic, msgtype in streams:
        factory = factories.get(topic)
        if factory is not None:
            out[topic] = BUILDERS[msgtype](state, factory, stamp_ns, period_s)
    return out


def transforms(state: RobotState, factory: Factory, stamp_ns: int) -> List[Any]:
    """``odom → base_link`` as ``geometry_msgs/TransformStamped`` (what ``/tf`` carries)."""
    t = factory()
    _header(t, ODOM_FRAME, stamp_ns)
    t.child_frame_id = BASE_FRAME
    _vec3(t.transform.translation, state.position)
    _quat(t.transform.rotation, state.orientation)
    return [t]


#: fixed sensor mounts on base_link published once on /tf_static: frame → (x, y, z) offset
SENSOR_MOUNTS = {SCAN_FRAME: (0.0, 0.0, 0.12), CAMERA_FRAME: (0.18, 0.0, 0.1)}


def static_transforms(factory: Factory, stamp_ns: int) -> List[Any]:
    out = []
    for frame, offset in SENSOR_MOUNTS.items():
        t = factory()
        _header(t, BASE_FRAME, stamp_ns)
        t.child_frame_id = frame
        _vec3(t.transform.translation, offset)
        t.transform.rotation.w = 1.0
        out.append(t)
    return out
