"""Trajectories, buffers, interface descriptions and datasets."""

from robot_training.data.trajectory import Trajectory, load_trajectories, save_trajectories

__all__ = ["Trajectory", "load_trajectories", "save_trajectories"]
