"""PyTorch datasets over a list of :class:`~robot_training.data.trajectory.Trajectory`.

* :class:`TransitionDataset` — single steps ``(obs, action, reward, next_obs, done)`` for SAC
  and MLP behavioural cloning. ``next_obs`` of a trajectory's last step is its
  ``final_observation`` (or the last observation when there is none); ``done`` is the
  *terminal* flag only (a truncation is not a terminal state: bootstrap through it),
  ``truncated`` is given separately.
* :class:`SequenceDataset` — windows of ``length`` consecutive steps of one trajectory for
  Dreamer world models and LSTM behavioural cloning. ``pad=False`` (default) yields only
  full windows (trajectories shorter than ``length`` contribute nothing); ``pad=True`` also
  yields each trajectory's shorter tail (or whole short trajectory), zero-padded at the end,
  with ``mask`` False on the padding. ``is_first`` is True on a trajectory's first step.

Both work with ``torch.utils.data.DataLoader`` (items are dicts of tensors; dict
observations stay dicts) and have ``sample(batch_size, generator)`` returning a typed
batch directly, which is faster than a DataLoader for small items.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from robot_training.data.trajectory import Trajectory

Obs = Union[torch.Tensor, Dict[str, torch.Tensor]]


class TransitionBatch(NamedTuple):
    observations: Obs
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: Obs
    dones: torch.Tensor
    truncations: torch.Tensor


class SequenceBatch(NamedTuple):
    observations: Obs       # (B, L, ...)
    actions: torch.Tensor   # (B, L, A)
    rewards: torch.Tensor   # (B, L)
    terminals: torch.Tensor
    truncations: torch.Tensor
    is_first: torch.Tensor
    mask: torch.Tensor      # False on padding


def _cat_obs(parts):
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return np.concatenate(parts, axis=0)


def _tensor(x) -> torch.Tensor:
    arr = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(arr) if arr.ndim else arr.copy())


def _take(obs, idx):
    if isinstance(obs, dict):
        return {k: _tensor(v[idx]) for k, v in obs.items()}
    return _tensor(obs[idx])


def _check(trajectories: Sequence[Trajectory]) -> None:
    if not trajectories:
        raise ValueError("no trajectories given")
    shape = trajectories[0].observation_shape
    for t in trajectories:
        if t.observation_shape != shape or t.action_dim != trajectories[0].action_dim:
            raise ValueError(f"trajectory {t.episode_id!r} has observation {t.observation_shape} and action "
                             f"{t.action_dim}, the first has {shape} and {trajectories[0].action_dim}")


def _flat(trajectories: Sequence[Trajectory]):
    obs = _cat_obs([t.observations for t in trajectories])
    nxt = _cat_obs([t.next_observations() for t in trajectories])
    return (obs, nxt, np.concatenate([t.actions for t in trajectories]),
            np.concatenate([t.rewards for t in trajectories]),
            np.concatenate([t.terminals for t in trajectories]),
            np.concatenate([t.truncations for t in trajectories]))


class TransitionDataset(Dataset):
    """Every step of every trajectory as one transition."""

    def __init__(self, trajectories: Sequence[Trajectory]):
        _check(trajectories)
        (self.obs, self.next_obs, self.actions, self.rewards,
         self.terminals, self.truncations) = _flat(trajectories)
        self.truncations = self.truncations.copy()
        # the end of every trajectory is a cut unless it is terminal
        ends = np.cumsum([len(t) for t in trajectories]) - 1
        self.truncations[ends] |= ~self.terminals[ends]

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def _batch(self, idx) -> TransitionBatch:
        return TransitionBatch(
            observations=_take(self.obs, idx),
            actions=_tensor(self.actions[idx]),
            rewards=_tensor(self.rewards[idx]),
            next_observations=_take(self.next_obs, idx),
            dones=_tensor(self.terminals[idx]),
            truncations=_tensor(self.truncations[idx]),
        )

    def __getitem__(self, i: int) -> dict:
        return self._batch(int(i))._asdict()

    def sample(self, batch_size: int, generator: Optional[np.random.Generator] = None) -> TransitionBatch:
        rng = generator if generator is not None else np.random.default_rng()
        return self._batch(rng.integers(0, len(self), size=batch_size))


class SequenceDataset(Dataset):
    """Windows of ``length`` steps inside single trajectories (never across a trajectory's end)."""

    def __init__(self, trajectories: Sequence[Trajectory], length: int, *, stride: int = 1, pad: bool = False):
        _check(trajectories)
        if length < 1 or stride < 1:
            raise ValueError(f"length and stride must be >= 1, got {length} and {stride}")
        self.length = int(length)
        self.pad = pad
        self.obs, _, self.actions, self.rewards, self.terminals, self.truncations = _flat(trajectories)
        starts: List[int] = []
        valid: List[int] = []
        self.is_first = np.zeros(len(self.actions), dtype=bool)
        offset = 0
        for t in trajectories:
            n = len(t)
            self.is_first[offset] = True
            full = list(range(0, n - self.length + 1, stride))
            starts += [offset + s for s in full]
            valid += [self.length] * len(full)
            if pad:
                nxt = full[-1] + stride if full else 0
                if nxt < n and (not full or full[-1] + self.length < n):
                    starts.append(offset + nxt)
                    valid.append(n - nxt)
            offset += n
        if not starts:
            raise ValueError(f"no trajectory has {self.length} steps (longest: "
                             f"{max(len(t) for t in trajectories)}); use pad=True or a shorter length")
        self.starts = np.asarray(starts, dtype=np.int64)
        self.valid = np.asarray(valid, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def _batch(self, windows: np.ndarray) -> SequenceBatch:
        steps = np.arange(self.length)
        mask = steps[None, :] < self.valid[windows][:, None]
        idx = np.where(mask, self.starts[windows][:, None] + steps[None, :], 0)

        def pick(arr):
            out = arr[idx]
            if not mask.all():
                out = out * mask.reshape(mask.shape + (1,) * (out.ndim - 2)).astype(out.dtype)
            return torch.from_numpy(np.ascontiguousarray(out))

        obs = {k: pick(v) for k, v in self.obs.items()} if isinstance(self.obs, dict) else pick(self.obs)
        return SequenceBatch(obs, pick(self.actions), pick(self.rewards), pick(self.terminals),
                             pick(self.truncations), pick(self.is_first), torch.from_numpy(mask))

    def __getitem__(self, i: int) -> dict:
        batch = self._batch(np.array([int(i)]))
        return {k: ({kk: vv[0] for kk, vv in v.items()} if isinstance(v, dict) else v[0])
                for k, v in batch._asdict().items()}

    def sample(self, batch_size: int, generator: Optional[np.random.Generator] = None) -> SequenceBatch:
        rng = generator if generator is not None else np.random.default_rng()
        return self._batch(rng.integers(0, len(self), size=batch_size))
