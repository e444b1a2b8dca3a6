"""Environments: making seeded (vector) Gymnasium envs from an id or a factory; the embedded
robots (``robot_training/Ugv-v0``, ``robot_training/Uav-v0``) are registered on import."""

from robot_training.envs.make import (
    EnvError,
    check_env_id,
    env_factory,
    make_env,
    make_vector_env,
    space_from_spec,
    space_spec,
)
from robot_training.envs.robots import ROBOT_ENV_IDS, register_robots

register_robots()

__all__ = ["ROBOT_ENV_IDS", "EnvError", "check_env_id", "env_factory", "make_env", "make_vector_env",
           "space_from_spec", "space_spec"]
