"""Embedded robots: a differential-drive ground robot (``ugv``) and a multirotor (``uav``).

Both are MuJoCo models written here (MJCF built in Python) served as Gymnasium envs, registered
on import of :mod:`robot_training.envs` as ``robot_training/Ugv-v0`` and
``robot_training/Uav-v0``. Their observations are what ``config/interface_ugv.yaml`` /
``config/interface_uav.yaml`` build from the simulator's messages; see
:mod:`robot_training.envs.robots.base` for what the simulator node reads from them.
"""

from __future__ import annotations

import gymnasium as gym

from pathlib import Path

ROBOT_ENV_IDS = {"ugv": "robot_training/Ugv-v0", "uav": "robot_training/Uav-v0"}


def interface_file(robot: str) -> Path:
    """The robot's shipped interface description, ``config/interface_<robot>.yaml``."""
    from robot_training.config import shipped_path

    return shipped_path("config", f"interface_{robot}.yaml")


def register_robots() -> None:
    """Register the robot envs with Gymnasium (idempotent)."""
    entry_points = {"ugv": "robot_training.envs.robots.ugv:UgvEnv", "uav": "robot_training.envs.robots.uav:UavEnv"}
    for robot, env_id in ROBOT_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_points[robot], disable_env_checker=False)
