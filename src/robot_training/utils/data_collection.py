"""The seed's import path for data collection (``from robot_training.utils.data_collection
import DataCollector, ROSDataCollector, create_synthetic_dataset``).

The code lives where its layer is: :mod:`robot_training.envs.collection` (environments and
synthetic data) and :mod:`robot_training.ros.data_collector` (ROS topics). ``ROSDataCollector``
is imported only when asked for, so importing this module never imports rclpy. This shim is
the one module outside ``ros/`` allowed to name the ROS layer (``test/test_import_boundaries.py``).
"""

from __future__ import annotations

from robot_training.envs.collection import (DataCollector, create_synthetic_dataset, evaluate_policy,  # noqa: F401
                                            load_trajectories, save_trajectories)

__all__ = ["DataCollector", "ROSDataCollector",  # noqa: F822 - ROSDataCollector comes from __getattr__ (lazy rclpy)
           "create_synthetic_dataset", "evaluate_policy", "load_trajectories", "save_trajectories"]


def __getattr__(name: str):
    if name == "ROSDataCollector":
        try:
            from robot_training.ros.data_collector import ROSDataCollector
        except ImportError as exc:
            raise ImportError(f"ROSDataCollector needs ROS 2 (rclpy) and robot_training.ros.data_collector: {exc}") from exc
        return ROSDataCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
