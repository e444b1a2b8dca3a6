"""Environment factories for the learners (world model, Dreamer): 64×64 pixel observations, random-action collection.

``make_env_factory("Pendulum-v1")`` returns a zero-argument factory. A ``pixels:`` prefix
(``"pixels:InvertedPendulum-v5"``) renders the task with ``render_mode="rgb_array"`` at 64×64
and uses the frame as the observation; MuJoCo needs an off-screen GL then
(``MUJOCO_GL=egl``, set here when unset).
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Union

import gymnasium as gym
import numpy as np

from robot_training.data.trajectory import Trajectory

EnvFactory = Callable[[], gym.Env]
PIXELS_PREFIX = "pixels:"


class PixelObservation(gym.ObservationWrapper):
    """Replace the observation with the rendered ``(size, size, 3)`` uint8 frame."""

    def __init__(self, env: gym.Env, size: int = 64):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation):
        frame = np.asarray(self.env.render())
        if frame.shape[:2] != (self.size, self.size):
            frame = _resize(frame, self.size)
        return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize (renderers normally honour width/height already)."""
    rows = np.linspace(0, frame.shape[0] - 1, size).round().astype(int)
    cols = np.linspace(0, frame.shape[1] - 1, size).round().astype(int)
    return frame[rows][:, cols]


def make_env_factory(env: Union[str, EnvFactory], image_size: int = 64, **kwargs) -> EnvFactory:
    """A zero-argument factory for a Gymnasium id (``pixels:<id>`` for image observations)."""
    if callable(env):
        return env
    if env.startswith(PIXELS_PREFIX):
        env_id = env[len(PIXELS_PREFIX):]
        os.environ.setdefault("MUJOCO_GL", "egl")

        def make_pixels() -> gym.Env:
            try:
                base = gym.make(env_id, render_mode="rgb_array", width=image_size, height=image_size, **kwargs)
            except TypeError:  # not a MuJoCo env: no width/height arguments
                base = gym.make(env_id, render_mode="rgb_array", **kwargs)
            return PixelObservation(base, image_size)

        return make_pixels
    return lambda: gym.make(env, **kwargs)


def collect_random_trajectories(env_factory: EnvFactory, num_steps: int, seed: int = 0) -> List[Trajectory]:
    """Episodes of uniformly random actions totalling at least ``num_steps`` steps."""
    env = env_factory()
    env.action_space.seed(seed)
    trajectories: List[Trajectory] = []
    steps, episode = 0, 0
    try:
        while steps < num_steps:
            observation, _ = env.reset(seed=seed + episode)
            obs, actions, rewards, terminals, truncations = [observation], [], [], [], []
            while True:
                action = env.action_space.sample()
                observation, reward, terminated, truncated, _ = env.step(action)
                actions.append(action)
                rewards.append(reward)
                terminals.append(terminated)
                truncations.append(truncated)
                steps += 1
                if terminated or truncated:
                    break
                obs.append(observation)
            trajectories.append(Trajectory(observations=np.stack(obs), actions=np.stack(actions), rewards=rewards,
                                           terminals=terminals, truncations=truncations,
                                           final_observation=observation, episode_id=f"random-{episode}"))
            episode += 1
    finally:
        env.close()
    return trajectories


def action_limits(env: gym.Env, action_dim: Optional[int] = None):
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"Dreamer here supports continuous (Box) actions, got {space}")
    return space.low.astype(np.float32), space.high.astype(np.float32)
