"""Parts shared by the policy algorithms: observation batching, episode statistics and
periodic checkpoints."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np


def as_batch(observation, observation_shape) -> Tuple[np.ndarray, bool]:
    """``(batch, was_single)``: one observation gains a leading axis, a batch is kept."""
    obs = np.asarray(observation, dtype=np.float32)
    shape = tuple(observation_shape)
    if obs.shape == shape:
        return obs[None], True
    if obs.shape[1:] == shape:
        return obs, False
    raise ValueError(f"observation has shape {obs.shape}; expected {shape} or (N, {', '.join(map(str, shape))})")


class EpisodeStats:
    """Running returns and lengths of the episodes of ``num_envs`` vector envs."""

    def __init__(self, num_envs: int, window: int = 20):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.recent = deque(maxlen=window)
        self.completed = 0

    def step(self, rewards: np.ndarray, dones: np.ndarray):
        """Accumulate one step; return ``[(return, length), ...]`` of the episodes that ended."""
        self.returns += rewards
        self.lengths += 1
        finished = []
        for i in np.nonzero(dones)[0]:
            finished.append((float(self.returns[i]), int(self.lengths[i])))
            self.recent.append(float(self.returns[i]))
            self.returns[i] = 0.0
            self.lengths[i] = 0
            self.completed += 1
        return finished

    @property
    def mean_recent(self) -> Optional[float]:
        return float(np.mean(self.recent)) if self.recent else None


class Checkpointer:
    """Writes ``<prefix>_step<N>.pt`` every ``every`` steps (keeping the last ``keep``) and
    ``<prefix>_final.pt`` at the end. ``save_fn(path)`` does the writing."""

    _STEP = re.compile(r"_step(\d+)\.pt$")

    def __init__(self, directory, prefix: str, every: int, save_fn: Callable[[Path], None], keep: int = 3):
        self.directory = Path(directory)
        self.prefix = prefix
        self.every = int(every)
        self.save_fn = save_fn
        self.keep = keep
        self.next_at: Optional[int] = None
        self.last_path: Optional[Path] = None

    def maybe_save(self, step: int) -> Optional[Path]:
        if self.every <= 0:
            return None
        if self.next_at is None:
            self.next_at = (step // self.every + 1) * self.every
        if step < self.next_at:
            return None
        self.next_at = (step // self.every + 1) * self.every
        path = self.directory / f"{self.prefix}_step{step:09d}.pt"
        self.save_fn(path)
        self.last_path = path
        self._prune()
        return path

    def save_final(self) -> Path:
        path = self.directory / f"{self.prefix}_final.pt"
        self.save_fn(path)
        self.last_path = path
        return path

    def _prune(self) -> None:
        steps = sorted(self.directory.glob(f"{self.prefix}_step*.pt"))
        for old in steps[: max(0, len(steps) - self.keep)]:
            old.unlink(missing_ok=True)
            for side in old.parent.glob(old.name[:-3] + ".*"):
                side.unlink(missing_ok=True)


def latest_checkpoint(directory, prefix: str) -> Optional[Path]:
    """The most recently written ``<prefix>_*.pt`` in ``directory`` (None if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    files = [p for p in directory.glob(f"{prefix}_*.pt") if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: p.stat().st_mtime_ns)
