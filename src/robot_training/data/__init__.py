"""Trajectories, buffers, interface descriptions and datasets."""

from robot_training.data.bag_dataset import BagError, load_bag_dataset
from robot_training.data.interface import InterfaceDescription, InterfaceError, load_interface
from robot_training.data.trajectory import Trajectory, load_trajectories, save_trajectories

__all__ = [
    "BagError",
    "InterfaceDescription",
    "InterfaceError",
    "Trajectory",
    "load_bag_dataset",
    "load_interface",
    "load_trajectories",
    "save_trajectories",
]
