"""A cooperative stop of an offline run, and the checkpoint it leaves.

``train`` and the trainer node set a stop event on SIGINT / SIGTERM; the next scalar the
learner logs between two updates raises :class:`TrainingStopped` (see
``robot_training.train.stop_between_updates``). Each trainer catches it where its state is
whole and writes a checkpoint that ``--resume`` continues from:

    with save_on_stop(lambda: (trainer.save_checkpoint(directory / f"world_model_{n}.pt"), n)):
        ...  # the update loop
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Optional, Tuple


class TrainingStopped(BaseException):
    """A cooperative stop reached a safe point of an offline run, between two updates.

    A ``BaseException``, like ``KeyboardInterrupt``: learners' ``except Exception`` blocks let
    it through and their ``finally`` blocks close environments and loggers. ``saved`` is the
    checkpoint written at the stop (None where the mode cannot write one), ``step`` its step.
    """

    def __init__(self, saved: Optional[Path] = None, step: Optional[int] = None):
        super().__init__("training stopped")
        self.saved = saved
        self.step = step


@contextlib.contextmanager
def save_on_stop(save: Callable[[], Tuple[Path, int]]):
    """On :class:`TrainingStopped` from the block, ``save()`` (→ ``(path, step)``) once, record
    it on the exception and let it go on (an outer trainer that wraps this one saves nothing
    more)."""
    try:
        yield
    except TrainingStopped as stopped:
        if stopped.saved is None:
            stopped.saved, stopped.step = save()
        raise


__all__ = ["TrainingStopped", "save_on_stop"]
