"""Collecting trajectories from a simulated environment, or synthetic ones.

::

    from robot_training.envs.collection import DataCollector, create_synthetic_dataset

    collector = DataCollector(env_factory)             # a Gymnasium id or a callable
    trajectories = collector.collect_episodes(num_episodes=100, policy=None)  # random actions
    collector.save_trajectories("data/trajectories.pkl.gz")
    trajectories = load_trajectories("data/trajectories.pkl.gz")

A policy is anything with ``predict(observation, deterministic=...)`` (PolicyTrainer, PPO,
SAC, BehavioralCloning, a Stable-Baselines3 model) or a plain callable ``obs -> action``.
The seed's import path :mod:`robot_training.utils.data_collection` re-exports these names
(and ``ROSDataCollector``, from the ROS layer).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np

from robot_training.data.trajectory import Trajectory, load_trajectories, save_trajectories as _save
from robot_training.envs.make import EnvSpec, make_env

__all__ = ["DataCollector", "create_synthetic_dataset", "evaluate_policy", "load_trajectories", "save_trajectories"]


def save_trajectories(path: Union[str, os.PathLike], trajectories) -> Path:
    """Write trajectories to ``path`` (gzip-compressed NumPy archive, never a pickle)."""
    return _save(path, trajectories)


def _act(policy: Any, obs, state, deterministic: bool):
    """One action from ``policy``; recurrent policies keep a carry: explicitly
    (``step``/``initial_state``) or inside themselves (``act``/``reset``: Dreamer agents,
    deployed policies)."""
    if hasattr(policy, "step") and hasattr(policy, "initial_state"):
        return policy.step(obs, state, deterministic=deterministic)
    if hasattr(policy, "act") and hasattr(policy, "reset"):
        if "deterministic" in inspect.signature(policy.act).parameters:
            return policy.act(obs, deterministic=deterministic), state
        return policy.act(obs), state
    if hasattr(policy, "predict"):
        out = policy.predict(obs, deterministic=deterministic)
        if isinstance(out, tuple):  # Stable-Baselines3 returns (action, state)
            out = out[0]
        return out, state
    if callable(policy):
        return policy(obs), state
    raise TypeError(f"policy must have predict() or be callable, got {type(policy).__name__}")


class DataCollector:
    """Runs episodes in an environment and records them as :class:`Trajectory` objects."""

    def __init__(self, env_factory: EnvSpec, seed: Optional[int] = 0, max_episode_steps: Optional[int] = None):
        self.env_factory = env_factory
        self.seed = seed
        self.max_episode_steps = max_episode_steps
        self.trajectories: List[Trajectory] = []
        self._env = None
        self._episodes_started = 0

    @property
    def env(self):
        if self._env is None:
            self._env = make_env(self.env_factory)
            if self.seed is not None:
                self._env.action_space.seed(self.seed)
        return self._env

    def collect_episodes(self, num_episodes: int, policy: Any = None, deterministic: bool = True,
                         max_steps: Optional[int] = None) -> List[Trajectory]:
        """``num_episodes`` episodes with ``policy`` (uniform random actions if None).

        Returns the new trajectories (also appended to ``self.trajectories``). An episode ends
        when the env terminates or truncates, or after ``max_steps`` steps (then truncated).
        """
        env = self.env
        limit = max_steps or self.max_episode_steps
        new: List[Trajectory] = []
        for _ in range(int(num_episodes)):
            seed = None if self.seed is None else self.seed + self._episodes_started
            self._episodes_started += 1
            obs, _ = env.reset(seed=seed)
            state = policy.initial_state(1) if policy is not None and hasattr(policy, "initial_state") else None
            if policy is not None and hasattr(policy, "reset") and hasattr(policy, "act"):
                policy.reset()  # a new episode starts from a fresh recurrent state
            observations, actions, rewards, terms, truncs = [], [], [], [], []
            while True:
                if policy is None:
                    action = env.action_space.sample()
                else:
                    action, state = _act(policy, obs, state, deterministic)
                next_obs, reward, term, trunc, _ = env.step(_env_action(env, action))
                observations.append(np.asarray(obs, dtype=np.float32))
                actions.append(np.asarray(action, dtype=np.float32).reshape(-1))
                rewards.append(float(reward))
                if limit is not None and len(actions) >= limit and not term:
                    trunc = True
                terms.append(bool(term))
                truncs.append(bool(trunc))
                obs = next_obs
                if term or trunc:
                    break
            new.append(Trajectory(
                observations=np.stack(observations), actions=np.stack(actions), rewards=np.asarray(rewards),
                terminals=np.asarray(terms), truncations=np.asarray(truncs),
                final_observation=np.asarray(obs, dtype=np.float32),
                episode_id=f"{_env_name(self.env_factory)}-{seed if seed is not None else len(self.trajectories)}",
            ))
            self.trajectories.append(new[-1])
        return new

    def save_trajectories(self, path: Union[str, os.PathLike]) -> Path:
        """Write every trajectory collected so far to ``path``."""
        return _save(path, self.trajectories)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def evaluate_policy(policy: Any, env_factory: EnvSpec, episodes: int = 10, seed: int = 10_000,
                    deterministic: bool = True) -> float:
    """Mean return of ``episodes`` episodes of ``policy`` (deterministic by default), each
    from its own seed ``seed + i``."""
    collector = DataCollector(env_factory, seed=seed)
    try:
        trajs = collector.collect_episodes(episodes, policy=policy, deterministic=deterministic)
    finally:
        collector.close()
    return float(sum(t.episode_return for t in trajs) / max(len(trajs), 1))


def _env_action(env, action):
    import gymnasium as gym

    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(-1)[0])
    a = np.asarray(action, dtype=np.float32).reshape(env.action_space.shape)
    return np.clip(a, env.action_space.low, env.action_space.high)


def _env_name(env_factory) -> str:
    return env_factory if isinstance(env_factory, str) else getattr(env_factory, "__name__", "env")


def create_synthetic_dataset(num_episodes: int, observation_dim: int, action_dim: int,
                             episode_length: int = 100, seed: int = 0) -> List[Trajectory]:
    """Episodes of a random stable linear system ``o' = A o + B a + noise`` driven by a noisy
    linear controller ``a = K o + noise``, with reward ``-|o|^2 - 0.1 |a|^2``: smooth,
    learnable data for tests and pipelines (not a substitute for real data)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(observation_dim, observation_dim))
    A *= 0.95 / max(np.abs(np.linalg.eigvals(A)).max(), 1e-6)
    B = rng.normal(scale=0.5, size=(observation_dim, action_dim))
    K = rng.normal(scale=0.3, size=(action_dim, observation_dim))
    out = []
    for ep in range(int(num_episodes)):
        o = rng.normal(size=observation_dim)
        obs, acts, rews = [], [], []
        for _ in range(int(episode_length)):
            a = np.tanh(K @ o + 0.1 * rng.normal(size=action_dim))
            obs.append(o)
            acts.append(a)
            rews.append(-float(o @ o) - 0.1 * float(a @ a))
            o = A @ o + B @ a + 0.05 * rng.normal(size=observation_dim)
        truncs = np.zeros(episode_length, bool)
        truncs[-1] = True
        out.append(Trajectory(observations=np.asarray(obs), actions=np.asarray(acts), rewards=np.asarray(rews),
                              terminals=np.zeros(episode_length, bool), truncations=truncs,
                              final_observation=o, episode_id=f"synthetic-{seed}-{ep}"))
    return out
