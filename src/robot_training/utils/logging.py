"""Run names, TensorBoard scalars and console logging, written once for every trainer.

TensorBoard tags are grouped like ``charts/episodic_return``, ``losses/actor``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Mapping, Optional, Union

log = logging.getLogger("robot_training")


def run_name(env: str, algorithm: str, seed: int) -> str:
    """``<env>__<algorithm>__<seed>__<unix time>``, safe as a folder name."""
    safe_env = env.replace("/", "_").replace(":", "_")
    return f"{safe_env}__{algorithm}__{seed}__{int(time.time())}"


class RunLogger:
    """Scalars to TensorBoard (when enabled) and the last value of each tag in memory.

    Listeners added with :meth:`add_listener` see every scalar of every logger in the process
    as ``fn(tag, value, step)`` (the trainer node follows a run's steps and metrics with one).
    Under torchrun only rank 0 writes TensorBoard files (the others keep scalars in memory).
    """

    _listeners: list = []

    def __init__(self, log_dir: Union[str, os.PathLike, None], enabled: bool = True):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.latest: dict[str, float] = {}
        self._writer = None
        from robot_training.utils.distributed import is_main

        if enabled and self.log_dir is not None and is_main():
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        self.latest[tag] = value
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)
        for fn in tuple(RunLogger._listeners):
            try:
                fn(tag, value, int(step))
            except Exception:  # a listener never stops training
                log.exception("RunLogger listener %r failed", fn)

    @classmethod
    def add_listener(cls, fn) -> None:
        """Call ``fn(tag, value, step)`` for every scalar logged from now on (any logger)."""
        cls._listeners.append(fn)

    @classmethod
    def remove_listener(cls, fn) -> None:
        if fn in cls._listeners:
            cls._listeners.remove(fn)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for tag, value in values.items():
            self.scalar(prefix + tag, value, step)

    def images(self, tag: str, images, step: int) -> None:
        """``images``: uint8 or float array ``(N, H, W, C)``."""
        if self._writer is not None:
            self._writer.add_images(tag, images, step, dataformats="NHWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: Optional[int], desc: str, enabled: bool = True, unit: str = "step"):
    """A tqdm progress bar (a silent stand-in when disabled, and on ranks other than 0)."""
    from tqdm.auto import tqdm

    from robot_training.utils.distributed import is_main

    return tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and is_main()), dynamic_ncols=True,
                smoothing=0.05)
