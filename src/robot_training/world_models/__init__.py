"""RSSM world models (PlaNet / DreamerV3 style): ``train_world_model`` and its trainer."""

from robot_training.world_models.rssm import RSSM
from robot_training.world_models.world_model import WorldModel

__all__ = ["RSSM", "WorldModel"]
