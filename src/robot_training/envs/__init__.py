"""Environments: making seeded (vector) Gymnasium envs from an id or a factory."""

from robot_training.envs.make import (
    EnvError,
    check_env_id,
    env_factory,
    make_env,
    make_vector_env,
    space_from_spec,
    space_spec,
)

__all__ = ["EnvError", "check_env_id", "env_factory", "make_env", "make_vector_env",
           "space_from_spec", "space_spec"]
