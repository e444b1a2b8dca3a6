"""Replay buffer for off-policy learning, with typed batches.

Transitions are stored in preallocated torch tensors (grown by doubling up to ``capacity``,
so a large capacity costs memory only as it fills). ``sample`` returns a :class:`ReplayBatch`
of tensors on the buffer's device. ``save``/``load`` write the filled part to an ``.npz``
file (atomically, no pickles) so a run can resume with its experience.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from robot_training.utils.files import atomic_write


class ReplayBatch(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    """1.0 where the episode terminated after the action (not for time-limit truncations)."""


class ReplayBuffer:
    _FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")

    def __init__(self, capacity: int, observation_shape: Sequence[int], action_dim: int,
                 device: Union[str, torch.device] = "cpu", initial_size: int = 4096,
                 seed: Optional[int] = None):
        self.capacity = int(capacity)
        self.observation_shape = tuple(observation_shape)
        self.action_dim = int(action_dim)
        self.device = torch.device(device)
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device="cpu")
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._alloc(min(self.capacity, max(1, int(initial_size))))

    def _alloc(self, n: int) -> None:
        old = getattr(self, "_store", None)
        shapes = {"observations": self.observation_shape, "actions": (self.action_dim,), "rewards": (),
                  "next_observations": self.observation_shape, "terminals": ()}
        store = {k: torch.zeros((n, *s), dtype=torch.float32, device=self.device) for k, s in shapes.items()}
        if old is not None:
            for k in self._FIELDS:
                store[k][: self.size] = old[k][: self.size]
        self._store = store
        self._allocated = n

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminals) -> None:
        """Add a batch of ``N`` transitions (one per vector env)."""
        obs = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(-1, *self.observation_shape)
        n = obs.shape[0]
        values = {
            "observations": obs,
            "actions": torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(n, self.action_dim),
            "rewards": torch.as_tensor(np.asarray(rewards, dtype=np.float32)).reshape(n),
            "next_observations": torch.as_tensor(np.asarray(next_obs, dtype=np.float32)).reshape(obs.shape),
            "terminals": torch.as_tensor(np.asarray(terminals, dtype=np.float32)).reshape(n),
        }
        if self.pos + n > self._allocated and self._allocated < self.capacity:
            self._alloc(min(self.capacity, max(self._allocated * 2, self.pos + n)))
        for i in range(n):  # n is the number of envs: usually 1
            p = self.pos
            for k in self._FIELDS:
                self._store[k][p] = values[k][i]
            self.pos = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> ReplayBatch:
        idx = torch.randint(0, self.size, (batch_size,), generator=self.generator)
        if self.device.type != "cpu":
            idx = idx.to(self.device)
        s = self._store
        return ReplayBatch(*(s[k].index_select(0, idx) for k in self._FIELDS))

    # ------------------------------------------------------------------ persistence
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Filled part, positions and sampling RNG to an ``.npz`` file (atomic)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: self._store[k][: self.size].cpu().numpy() for k in self._FIELDS}
        arrays["meta"] = np.array([self.capacity, self.pos, self.size], dtype=np.int64)
        arrays["generator_state"] = self.generator.get_state().numpy()
        with atomic_write(path) as f:
            np.savez(f, **arrays)
        return path

    def load(self, path: Union[str, os.PathLike]) -> None:
        with np.load(path, allow_pickle=False) as data:
            capacity, pos, size = (int(v) for v in data["meta"])
            if data["observations"].shape[1:] != self.observation_shape:
                raise ValueError(f"{path}: replay observations have shape {data['observations'].shape[1:]}, "
                                 f"expected {self.observation_shape}")
            self.capacity = max(self.capacity, capacity)
            self.size = 0
            self._store = None
            self._alloc(min(self.capacity, max(size, 1)))
            for k in self._FIELDS:
                self._store[k][:size] = torch.as_tensor(data[k]).to(self.device)
            self.size, self.pos = size, pos % self.capacity
            self.generator.set_state(torch.as_tensor(data["generator_state"]))
