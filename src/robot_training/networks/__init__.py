"""Network building blocks shared by every algorithm."""

from robot_training.networks.mlp import mlp

__all__ = ["mlp"]
