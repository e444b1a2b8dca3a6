"""Following a waypoint mission from odometry alone: what a navigator node does on a robot.

The embedded robots track their missions inside the env (reward, termination). A robot in
Gazebo or on the floor has no such env: :class:`MissionTracker` takes the mission's waypoints
(in ``odom``) and each odometry pose, and gives the next waypoint in ``base_link`` (the
``/goal_pose`` the interface descriptions observe), the waypoints reached and the path
length. Plain Python and NumPy.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def rotate_into_body(vector: np.ndarray, quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """``vector`` (odom axes) expressed in the axes of a body with orientation ``quaternion``."""
    x, y, z, w = (float(q) for q in quaternion_xyzw)
    norm = np.sqrt(x * x + y * y + z * z + w * w) or 1.0
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    body_to_odom = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return body_to_odom.T @ np.asarray(vector, dtype=np.float64)


class MissionTracker:
    """Waypoints reached, in order, within ``reach_radius`` (planar distance when ``planar``)."""

    def __init__(self, waypoints, reach_radius: float, planar: bool):
        points = np.asarray(waypoints, dtype=np.float64).reshape(-1, 3)
        if points.shape[0] == 0:
            raise ValueError("a mission needs at least one waypoint")
        if reach_radius <= 0:
            raise ValueError(f"reach_radius must be > 0, got {reach_radius}")
        self.waypoints, self.reach_radius, self.planar = points, float(reach_radius), bool(planar)
        self.reached = 0
        self.path_length = 0.0
        self._last: Optional[np.ndarray] = None

    @property
    def complete(self) -> bool:
        return self.reached >= len(self.waypoints)

    def _distance(self, position: np.ndarray) -> float:
        delta = self.waypoints[self.reached] - position
        return float(np.linalg.norm(delta[:2] if self.planar else delta))

    def update(self, position, orientation) -> np.ndarray:
        """Advance with one odometry pose; the next waypoint in base_link (zeros when complete)."""
        position = np.asarray(position, dtype=np.float64)
        if self._last is not None:
            step = position - self._last
            self.path_length += float(np.linalg.norm(step[:2] if self.planar else step))
        self._last = position
        while not self.complete and self._distance(position) <= self.reach_radius:
            self.reached += 1
        if self.complete:
            return np.zeros(3)
        return rotate_into_body(self.waypoints[self.reached] - position, orientation)
