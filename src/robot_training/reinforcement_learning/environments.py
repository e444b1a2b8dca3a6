"""Moved to :mod:`robot_training.envs.factories` (environments sit below every learner); this
name stays for code written against it."""

from robot_training.envs.factories import (EnvFactory, PixelObservation, action_limits,  # noqa: F401
                                           collect_random_trajectories, make_env_factory)
