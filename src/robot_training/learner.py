"""The one surface every learner of the suite follows (PPO, SAC, BC, the world model, Dreamer).

::

    from robot_training.learner import Learner

    isinstance(trainer, Learner)        # True for every class the registry names as a learner
    trainer.learn(...)                  # the whole training run its family knows (env steps, epochs, updates)
    trainer.train_step(batch)           # one gradient update: what the online loop and DDP drive
    trainer.predict(observation)        # acting (the world model: open-loop prediction)
    trainer.save(path); trainer.load(path)

``learn``'s arguments are the family's own (an env-step budget for PPO and SAC,
demonstrations for BC, trajectories for the world model, a step budget for Dreamer);
``train_step`` takes one batch of the learner's own kind (a PPO rollout, a SAC replay
batch, a BC batch or trajectories, a world-model sequence batch) and returns its losses.
The registry (:mod:`robot_training.algorithms`) maps each algorithm's name to its learner.
This module imports nothing of the package (and no PyTorch).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Protocol, Union, runtime_checkable

PathLike = Union[str, os.PathLike]


@runtime_checkable
class Learner(Protocol):
    """``learn`` / ``train_step`` / ``predict`` / ``save`` / ``load`` (``isinstance`` checks
    that the methods are there; their arguments are documented on each learner)."""

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        """Train (a whole run: an env-step budget, epochs or updates); returns the learner or its metrics."""

    def train_step(self, batch: Any) -> Mapping[str, Any]:
        """One gradient update on ``batch``; the losses and metrics of it."""

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Act on an observation (NumPy in, NumPy out), or predict (the world model)."""

    def save(self, path: PathLike) -> Any:
        """Write a checkpoint that :meth:`load` restores; returns its path."""

    def load(self, path: PathLike) -> Any:
        """Restore a checkpoint written by :meth:`save`."""


__all__ = ["Learner"]
