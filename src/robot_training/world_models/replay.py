"""Sequence replay: a flat ring buffer of steps from which fixed-length chunks are sampled.

Steps are stored in *replay order*: observation ``o_t`` with the action ``a_{t-1}`` and reward
``r_{t-1}`` that led to it, ``is_first`` at episode starts and ``is_terminal`` when ``o_t`` ends
the episode. Episodes are stored back to back, so a sampled chunk may cross an episode
boundary; ``is_first`` tells the world model to reset its state there, and short episodes
(a pendulum that falls after 5 steps) are as usable as long ones.

A :class:`~robot_training.data.trajectory.Trajectory` of ``T`` steps becomes ``T + 1`` replay
steps (its ``final_observation`` is the last; when absent the last observation is repeated).
Sampling draws all chunk starts at once and gathers them with one fancy index: no Python loop
over the batch.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from robot_training.data.trajectory import Trajectory

Observation = Union[np.ndarray, Dict[str, np.ndarray]]


class SequenceReplay:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.size = 0
        self._next = 0  # physical index written next
        self._arrays: Optional[Dict[str, np.ndarray]] = None
        self._dict_obs = False
        self.num_episodes = 0

    # ------------------------------------------------------------------ writing
    def _allocate(self, observation: Observation, action_dim: int) -> None:
        self._dict_obs = isinstance(observation, Mapping)
        obs = observation if self._dict_obs else {"obs": observation}
        arrays = {f"observation/{k}": np.zeros((self.capacity, *np.shape(v)), np.asarray(v).dtype)
                  for k, v in obs.items()}
        arrays.update(action=np.zeros((self.capacity, action_dim), np.float32),
                      reward=np.zeros(self.capacity, np.float32),
                      is_first=np.zeros(self.capacity, bool),
                      is_terminal=np.zeros(self.capacity, bool))
        self._arrays = arrays

    def add_step(self, observation: Observation, action: np.ndarray, reward: float,
                 is_first: bool, is_terminal: bool) -> None:
        """One step in replay order (``action`` and ``reward`` are those that led here)."""
        self.add_steps(_expand(observation), np.asarray(action, np.float32)[None], np.array([reward]),
                       np.array([is_first]), np.array([is_terminal]))

    def add_steps(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray,
                  is_first: np.ndarray, is_terminal: np.ndarray) -> None:
        n = len(actions)
        if self._arrays is None:
            first = {k: v[0] for k, v in observations.items()} if isinstance(observations, Mapping) else observations[0]
            self._allocate(first, actions.shape[-1])
        index = (self._next + np.arange(n)) % self.capacity
        obs = observations if self._dict_obs else {"obs": observations}
        for key, value in obs.items():
            self._arrays[f"observation/{key}"][index] = value
        self._arrays["action"][index] = actions
        self._arrays["reward"][index] = rewards
        self._arrays["is_first"][index] = is_first
        self._arrays["is_terminal"][index] = is_terminal
        self.num_episodes += int(np.sum(is_first))
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def add_trajectory(self, trajectory: Trajectory, action_low: Optional[np.ndarray] = None,
                       action_high: Optional[np.ndarray] = None) -> None:
        """Append an episode; actions are scaled to ``[-1, 1]`` when bounds are given."""
        steps = trajectory_to_steps(trajectory)
        if action_low is not None:
            steps["action"][1:] = normalize_action(steps["action"][1:], action_low, action_high)
        self.add_steps(steps["observation"], steps["action"], steps["reward"], steps["is_first"],
                       steps["is_terminal"])

    # ------------------------------------------------------------------ reading
    def sample(self, batch_size: int, length: int, rng: np.random.Generator,
               rows: Optional[slice] = None) -> Dict[str, object]:
        """``batch_size`` chunks of ``length`` consecutive steps as NumPy arrays ``(B, T, ...)``;
        ``rows`` keeps those rows of the batch drawn (one rank's share: the generator advances as
        for the whole batch)."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one sequence of {length}")
        oldest = (self._next - self.size) % self.capacity
        starts = rng.integers(0, self.size - length + 1, size=batch_size)
        if rows is not None:
            starts = starts[rows]
        index = (oldest + starts[:, None] + np.arange(length)[None]) % self.capacity
        batch = {k: v[index] for k, v in self._arrays.items()}
        batch["is_first"][:, 0] = True  # every chunk starts from a fresh state
        obs = {k.split("/", 1)[1]: batch.pop(k) for k in list(batch) if k.startswith("observation/")}
        batch["observation"] = obs if self._dict_obs else obs["obs"]
        return batch

    def __len__(self) -> int:
        return self.size


def trajectory_to_steps(trajectory: Trajectory) -> Dict[str, object]:
    """A trajectory (``o_t, a_t, r_t`` after ``a_t``) as ``T + 1`` steps in replay order."""
    t = len(trajectory)
    final = trajectory.final_observation

    def with_final(obs: np.ndarray, last: Optional[np.ndarray]) -> np.ndarray:
        return np.concatenate([obs, (obs[-1] if last is None else last)[None]], 0)

    if isinstance(trajectory.observations, dict):
        observations = {k: with_final(v, None if final is None else final[k])
                        for k, v in trajectory.observations.items()}
    else:
        observations = with_final(trajectory.observations, final)
    actions = np.concatenate([np.zeros((1, trajectory.action_dim), np.float32), trajectory.actions], 0)
    rewards = np.concatenate([[0.0], trajectory.rewards]).astype(np.float32)
    is_first = np.zeros(t + 1, bool)
    is_first[0] = True
    is_terminal = np.concatenate([[False], trajectory.terminals])
    return {"observation": observations, "action": actions, "reward": rewards,
            "is_first": is_first, "is_terminal": is_terminal}


def normalize_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return (2.0 * (action - low) / (high - low) - 1.0).astype(np.float32)


def denormalize_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return (low + (np.asarray(action) + 1.0) * 0.5 * (high - low)).astype(np.float32)


def action_bounds(trajectories: Sequence[Trajectory]) -> tuple:
    """Per-dimension min/max of the recorded actions (a degenerate range is widened to ±1)."""
    actions = np.concatenate([t.actions for t in trajectories], 0)
    low, high = actions.min(0), actions.max(0)
    flat = high - low < 1e-6
    low = np.where(flat, low - 1.0, low)
    high = np.where(flat, high + 1.0, high)
    return low.astype(np.float32), high.astype(np.float32)


def to_torch(batch: Dict[str, object], device) -> Dict[str, object]:
    """NumPy batch → tensors on ``device`` (images stay uint8 until the encoder)."""
    def convert(value):
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return torch.as_tensor(value, device=device)

    return {k: convert(v) for k, v in batch.items()}


def _expand(observation: Observation) -> Observation:
    if isinstance(observation, Mapping):
        return {k: np.asarray(v)[None] for k, v in observation.items()}
    return np.asarray(observation)[None]


def replay_from_trajectories(trajectories: Iterable[Trajectory], action_low=None, action_high=None,
                             extra_capacity: int = 0) -> SequenceReplay:
    trajectories = list(trajectories)
    replay = SequenceReplay(sum(len(t) + 1 for t in trajectories) + extra_capacity)
    for trajectory in trajectories:
        replay.add_trajectory(trajectory, action_low, action_high)
    return replay
