"""Trajectories, replay, bags → datasets (the interface description itself is ``robot_training.interface``)."""

from robot_training.data.bag_dataset import BagError, load_bag_dataset
from robot_training.data.trajectory import Trajectory, load_trajectories, save_trajectories
from robot_training.interface.description import InterfaceDescription, InterfaceError, load_interface

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
