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

Several environments stepped together (online Dreamer's ``num_envs``) write into separate
*streams*: ``num_streams`` rings of ``capacity // num_streams`` steps each, one per env
(:meth:`SequenceReplay.add_env_steps` writes one step into each). A chunk lies inside one
stream, so it never mixes two envs' steps; chunk starts are drawn uniformly over all the
streams' valid starts (with one stream, exactly the draws of a single ring).
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from robot_training.data.trajectory import Trajectory

Observation = Union[np.ndarray, Dict[str, np.ndarray]]


class SequenceReplay:
    def __init__(self, capacity: int, num_streams: int = 1):
        if num_streams < 1 or capacity < num_streams:
            raise ValueError(f"a replay of {capacity} steps cannot hold {num_streams} streams")
        self.num_streams = int(num_streams)
        self.stream_capacity = int(capacity) // self.num_streams
        self.capacity = self.stream_capacity * self.num_streams
        # per stream: its steps held and the position written next (stream s owns the
        # physical indices s * stream_capacity ... (s + 1) * stream_capacity - 1)
        self._sizes = np.zeros(self.num_streams, np.int64)
        self._next = np.zeros(self.num_streams, np.int64)
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

    def _write(self, index: np.ndarray, observations: Observation, actions: np.ndarray, rewards: np.ndarray,
               is_first: np.ndarray, is_terminal: np.ndarray) -> None:
        """Rows of steps at physical ``index``."""
        if self._arrays is None:
            first = {k: v[0] for k, v in observations.items()} if isinstance(observations, Mapping) else observations[0]
            self._allocate(first, actions.shape[-1])
        obs = observations if self._dict_obs else {"obs": observations}
        for key, value in obs.items():
            self._arrays[f"observation/{key}"][index] = value
        self._arrays["action"][index] = actions
        self._arrays["reward"][index] = rewards
        self._arrays["is_first"][index] = is_first
        self._arrays["is_terminal"][index] = is_terminal
        self.num_episodes += int(np.sum(is_first))

    def add_step(self, observation: Observation, action: np.ndarray, reward: float,
                 is_first: bool, is_terminal: bool, stream: int = 0) -> None:
        """One step in replay order (``action`` and ``reward`` are those that led here)."""
        self.add_steps(_expand(observation), np.asarray(action, np.float32)[None], np.array([reward]),
                       np.array([is_first]), np.array([is_terminal]), stream)

    def add_steps(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray,
                  is_first: np.ndarray, is_terminal: np.ndarray, stream: int = 0) -> None:
        """Consecutive steps of one stream (rows in replay order)."""
        n, cap = len(actions), self.stream_capacity
        self._write(stream * cap + (self._next[stream] + np.arange(n)) % cap, observations, actions, rewards,
                    is_first, is_terminal)
        self._next[stream] = (self._next[stream] + n) % cap
        self._sizes[stream] = min(self._sizes[stream] + n, cap)

    def add_env_steps(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray,
                      is_first: np.ndarray, is_terminal: np.ndarray, streams: Optional[np.ndarray] = None) -> None:
        """One step for each of ``streams`` (distinct; default all, in order): row ``i`` goes
        to stream ``streams[i]``, as when ``num_streams`` vector envs have stepped once."""
        streams = np.arange(self.num_streams) if streams is None else np.asarray(streams, np.int64)
        self._write(streams * self.stream_capacity + self._next[streams], observations, actions, rewards,
                    is_first, is_terminal)
        self._next[streams] = (self._next[streams] + 1) % self.stream_capacity
        self._sizes[streams] = np.minimum(self._sizes[streams] + 1, self.stream_capacity)

    def add_trajectory(self, trajectory: Trajectory, action_low: Optional[np.ndarray] = None,
                       action_high: Optional[np.ndarray] = None) -> None:
        """Append an episode to the stream holding fewest steps; actions are scaled to
        ``[-1, 1]`` when bounds are given."""
        steps = trajectory_to_steps(trajectory)
        if action_low is not None:
            steps["action"][1:] = normalize_action(steps["action"][1:], action_low, action_high)
        self.add_steps(steps["observation"], steps["action"], steps["reward"], steps["is_first"],
                       steps["is_terminal"], int(np.argmin(self._sizes)))

    # ------------------------------------------------------------------ reading
    def sample(self, batch_size: int, length: int, rng: np.random.Generator,
               rows: Optional[slice] = None) -> Dict[str, object]:
        """``batch_size`` chunks of ``length`` consecutive steps of one stream each, as NumPy
        arrays ``(B, T, ...)``; ``rows`` keeps those rows of the batch drawn (one rank's share:
        the generator advances as for the whole batch)."""
        starts_per_stream = np.maximum(self._sizes - length + 1, 0)
        if not starts_per_stream.any():
            raise ValueError(f"replay holds {self.size} steps in {self.num_streams} stream(s), "
                             f"fewer than one sequence of {length} in any")
        draws = rng.integers(0, starts_per_stream.sum(), size=batch_size)
        if rows is not None:
            draws = draws[rows]
        ends = np.cumsum(starts_per_stream)
        stream = np.searchsorted(ends, draws, side="right")
        start = draws - (ends - starts_per_stream)[stream]
        oldest = (self._next - self._sizes) % self.stream_capacity
        index = (stream * self.stream_capacity)[:, None] + (
            (oldest[stream] + start)[:, None] + np.arange(length)[None]) % self.stream_capacity
        batch = {k: v[index] for k, v in self._arrays.items()}
        batch["is_first"][:, 0] = True  # every chunk starts from a fresh state
        obs = {k.split("/", 1)[1]: batch.pop(k) for k in list(batch) if k.startswith("observation/")}
        batch["observation"] = obs if self._dict_obs else obs["obs"]
        return batch

    @property
    def size(self) -> int:
        """Steps held, all streams together."""
        return int(self._sizes.sum())

    @property
    def max_sequence_length(self) -> int:
        """The longest chunk :meth:`sample` can draw (the steps of the fullest stream)."""
        return int(self._sizes.max())

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
