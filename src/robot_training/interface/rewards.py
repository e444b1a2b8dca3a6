"""Named reward functions an interface description may select (``reward: {function: NAME}``).

The YAML can only pick a name from :data:`REWARD_FUNCTIONS`, never point at code. Each
function is vectorised over time::

    fn(observations, actions, next_observations, **params) -> rewards (T,)

``observations`` and ``next_observations`` map stream names to ``(T, ...)`` arrays (the
per-stream arrays, before they are concatenated), ``actions`` is ``(T, action_dim)``.
``params`` come from ``reward.params`` in the YAML. A policy server evaluating one step
passes arrays with ``T = 1``.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence

import numpy as np


def _stream(arrays: Mapping[str, np.ndarray], stream: str) -> np.ndarray:
    if stream not in arrays:
        raise KeyError(f"reward function needs observation stream '{stream}' (streams: {sorted(arrays)})")
    return np.asarray(arrays[stream], dtype=np.float64)


def pole_upright(observations, actions, next_observations, stream: str = "joints",
                 index: int = 1, threshold: float = 0.2) -> np.ndarray:
    """+1 for every step after which ``|next_obs[stream][index]|`` (a pole angle) is within ``threshold``.

    Gymnasium's InvertedPendulum gives the same +1 per step while the pole stands.
    """
    angle = _stream(next_observations, stream)[:, index]
    return (np.abs(angle) <= threshold).astype(np.float32)


def action_penalty(observations, actions, next_observations, weight: float = 0.01) -> np.ndarray:
    """``-weight * |a|²``: a small cost on effort."""
    a = np.asarray(actions, dtype=np.float64)
    return (-weight * np.sum(a * a, axis=-1)).astype(np.float32)


def distance_to_target(observations, actions, next_observations, stream: str = "odom",
                       indices: Sequence[int] = (0, 1), target: Sequence[float] = (0.0, 0.0),
                       ) -> np.ndarray:
    """``-‖next_obs[stream][indices] - target‖``: e.g. planar distance of a base to a goal."""
    x = _stream(next_observations, stream)[:, list(indices)]
    return (-np.linalg.norm(x - np.asarray(target, dtype=np.float64), axis=-1)).astype(np.float32)


REWARD_FUNCTIONS: Dict[str, Callable[..., np.ndarray]] = {
    "pole_upright": pole_upright,
    "action_penalty": action_penalty,
    "distance_to_target": distance_to_target,
}
