"""What every embedded robot gives the simulator node: its sensors' readings, in ROS terms.

A robot env (:mod:`~robot_training.envs.robots.ugv`, :mod:`~robot_training.envs.robots.uav`) is
a Gymnasium env whose flat observation is exactly what its interface description
(``config/interface_<robot>.yaml``) builds from the messages the simulator publishes, and
whose :meth:`RobotEnv.robot_state` returns those sensors' readings. The simulator node turns
a :class:`RobotState` into full messages (``nav_msgs/Odometry`` with pose and twist,
``sensor_msgs/Imu``, ``sensor_msgs/LaserScan``, the goal as ``geometry_msgs/PoseStamped``,
``sensor_msgs/Image``, ``/tf``) as the Gazebo + ``ros_gz_bridge`` set-up of the same robot
would publish them, whatever part of them the interface reads.

Frames follow REP 103/105: ``odom`` is the fixed world frame of the arena (the simulator's
world frame, z up, the ground at z = 0), ``base_link`` the robot's body (x forward, y left,
z up). Odometry is the body's true motion (drift-free), as Gazebo's odometry publisher reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

ODOM_FRAME, BASE_FRAME, SCAN_FRAME, CAMERA_FRAME = "odom", "base_link", "base_scan", "camera_link"


@dataclass
class RobotState:
    """The sensors' readings at one control step (float64 arrays unless noted)."""

    position: np.ndarray
    """(3,) base_link origin in odom, m."""
    orientation: np.ndarray
    """(4,) quaternion x, y, z, w rotating base_link into odom."""
    linear_velocity: np.ndarray
    """(3,) velocity of base_link in base_link axes, m/s (the Odometry twist)."""
    angular_velocity: np.ndarray
    """(3,) angular velocity in base_link axes, rad/s (Odometry twist and the IMU's gyro)."""
    linear_acceleration: np.ndarray
    """(3,) IMU specific force in base_link axes, m/s² (+9.81 on z when level and at rest)."""
    goal: np.ndarray
    """(3,) the next waypoint in base_link axes (relative to the robot), m; zeros when the
    mission is complete."""
    goal_odom: np.ndarray
    """(3,) the same waypoint in odom, m."""
    scan: Optional[np.ndarray] = None
    """(N,) ranges, m, counter-clockwise from ``scan_angle_min``; ``inf`` where no return
    within ``range_max`` (REP 117)."""
    scan_angle_min: float = -np.pi
    scan_angle_max: float = np.pi
    scan_range_min: float = 0.05
    scan_range_max: float = 6.0
    image: Optional[np.ndarray] = None
    """(H, W, 3) uint8 RGB camera frame, or None without a camera."""


class RobotEnv:
    """Mixin documenting what the simulator node calls on a robot env (duck-typed)."""

    robot_name: str = ""
    """``ugv`` or ``uav``: the interface description ``config/interface_<robot_name>.yaml``."""

    def robot_state(self) -> RobotState:  # pragma: no cover - interface
        raise NotImplementedError
