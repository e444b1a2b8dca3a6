"""Making Gymnasium environments: one id or factory in, seeded single or vector envs out.

``env`` arguments across the suite may be a Gymnasium id (``"InvertedPendulum-v5"``) or a
callable returning a fresh ``gymnasium.Env`` (the seed's ``env_factory``). Vector envs use
``SyncVectorEnv`` in ``SAME_STEP`` autoreset mode: when a sub-env ends, the step returns the
first observation of the next episode and ``info["final_obs"]`` holds the last observation of
the one that ended, which the algorithms need to bootstrap truncated episodes.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Union

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

EnvFactory = Callable[[], gym.Env]
EnvSpec = Union[str, EnvFactory]


class EnvError(ValueError):
    """An environment id or factory that cannot be used."""


def env_factory(env: EnvSpec, **kwargs: Any) -> EnvFactory:
    """A zero-argument callable making the environment ``env`` (an id or a callable)."""
    if callable(env):
        return env
    if not isinstance(env, str):
        raise EnvError(f"expected a Gymnasium id or a callable returning an env, got {type(env).__name__}")
    check_env_id(env)
    return lambda: gym.make(env, **kwargs)


def check_env_id(env_id: str) -> None:
    """Raise :class:`EnvError` (one clear line) if ``env_id`` is not registered."""
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise EnvError(f"unknown environment '{env_id}': {exc}") from None


def make_env(env: EnvSpec, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """One environment; reset once with ``seed`` when given (that seeds its RNG)."""
    try:
        e = env_factory(env, **kwargs)()
    except EnvError:
        raise
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"environment '{env}' needs a missing dependency: {exc}") from None
    if seed is not None:
        e.reset(seed=seed)
        e.action_space.seed(seed)
    return e


def make_vector_env(env: EnvSpec, num_envs: int) -> SyncVectorEnv:
    """``num_envs`` copies in a ``SyncVectorEnv`` with ``SAME_STEP`` autoreset (not yet reset)."""
    factory = env_factory(env)
    try:
        return SyncVectorEnv([factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    except gym.error.DependencyNotInstalled as exc:
        raise EnvError(f"environment '{env}' needs a missing dependency: {exc}") from None


def final_observations(next_obs, infos: Dict[str, Any], done: np.ndarray):
    """The true next observation of every sub-env: ``final_obs`` where an episode ended
    (under ``SAME_STEP`` autoreset such an env returns the next episode's first). Arrays, or
    dicts of arrays for Dict observation spaces."""
    is_dict = isinstance(next_obs, Mapping)
    real = {k: v.copy() for k, v in next_obs.items()} if is_dict else next_obs.copy()
    if done.any() and "final_obs" in infos:
        mask = infos.get("_final_obs", done)
        for i in np.nonzero(mask)[0]:
            if is_dict:
                for key, value in real.items():
                    value[i] = infos["final_obs"][i][key]
            else:
                real[i] = infos["final_obs"][i]
    return real


# ----------------------------------------------------------------------- space descriptions


def space_spec(space: gym.Space) -> Dict[str, Any]:
    """A plain description of a Box or Discrete space (storable in a weights-only checkpoint)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "shape": list(space.shape), "low": space.low.astype(np.float64).tolist(),
                "high": space.high.astype(np.float64).tolist(), "dtype": str(space.dtype)}
    raise EnvError(f"unsupported space {space!r}: robot_training policies handle Box and Discrete spaces")


def space_from_spec(spec: Dict[str, Any]) -> gym.Space:
    if spec["type"] == "discrete":
        return gym.spaces.Discrete(spec["n"], start=spec.get("start", 0))
    if spec["type"] == "box":
        return gym.spaces.Box(low=np.asarray(spec["low"], dtype=np.float32),
                              high=np.asarray(spec["high"], dtype=np.float32),
                              shape=tuple(spec["shape"]), dtype=np.dtype(spec.get("dtype", "float32")))
    raise EnvError(f"unknown space description {spec!r}")
