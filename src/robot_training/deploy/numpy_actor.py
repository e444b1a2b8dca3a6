"""Acting without PyTorch on the control path: a frozen NumPy copy of a PPO or SAC actor.

A robot's actor answers one observation at a time. Through PyTorch that is a dozen dispatched
operators (PPO's ``predict`` also runs the critic and a log-probability it then drops), about
0.5 ms per tick on this project's 2-core machines and several milliseconds when the caches
are cold after a 40 ms wait between ticks, which is every tick at 25 Hz. The same actor as a
few NumPy matrix products costs a fraction of that (``bench/bench_actor_latency.py``).

:func:`numpy_actor` copies the weights of a trained actor once, at load time, and returns
``act(observation, deterministic) -> action`` computing exactly the actor's mode (and its
sampled action, with NumPy's generator): observation normalisation, the MLP, the squashing
and the clipping of the trainer's own ``predict``. It returns ``None`` for anything it does
not know layer for layer (a discrete PPO, an unknown module), and the loader then acts
through PyTorch as before. ``test/test_deploy.py`` checks both paths against each other.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np


class Unsupported(Exception):
    """A module this NumPy copy does not reproduce exactly."""


def _f32(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def _ops(module) -> List[Callable[[np.ndarray], np.ndarray]]:
    """One function per layer of an ``nn.Sequential`` of Linear, Tanh and ReLU layers (the layers
    of the PPO and SAC actors); any other layer is :class:`Unsupported`."""
    from torch import nn

    ops: List[Callable[[np.ndarray], np.ndarray]] = []
    for layer in (module if isinstance(module, nn.Sequential) else [module]):
        if isinstance(layer, nn.Linear):
            w, b = _f32(layer.weight.T), (_f32(layer.bias) if layer.bias is not None else None)
            ops.append((lambda x, w=w, b=b: x @ w + b) if b is not None else (lambda x, w=w: x @ w))
        elif isinstance(layer, nn.Tanh):
            ops.append(np.tanh)
        elif isinstance(layer, nn.ReLU):
            ops.append(lambda x: np.maximum(x, 0.0, dtype=np.float32))
        elif isinstance(layer, nn.Identity):
            continue
        else:
            raise Unsupported(type(layer).__name__)
    return ops


def _run(ops, x: np.ndarray) -> np.ndarray:
    for op in ops:
        x = op(x)
    return x


def _ppo(algo) -> Callable:
    model = algo.model
    if model.discrete:
        raise Unsupported('discrete actions')
    actor = _ops(model.actor)
    norm = model.obs_norm
    mean, inv_std = _f32(norm._mean32), _f32(norm._inv_std32)
    clip = np.float32(norm.clip)
    std = np.exp(_f32(model.actor_logstd))
    low, high = algo.action_space.low.astype(np.float32), algo.action_space.high.astype(np.float32)
    normalize = bool(model.norm_obs)
    rng = np.random.default_rng()

    def act(obs: np.ndarray, deterministic: bool) -> np.ndarray:
        x = np.clip((obs - mean) * inv_std, -clip, clip) if normalize else obs
        out = _run(actor, x)
        if not deterministic:
            out = out + std * rng.standard_normal(out.shape, dtype=np.float32)
        return np.clip(out, low, high).astype(np.float32)

    return act


def _sac(algo) -> Callable:
    from robot_training.policies.sac import LOG_STD_MAX, LOG_STD_MIN

    actor = algo.actor
    trunk, head = _ops(actor.trunk), _ops(actor.head)
    scale, bias = _f32(actor.action_scale), _f32(actor.action_bias)
    lo, span = np.float32(LOG_STD_MIN), np.float32(0.5 * (LOG_STD_MAX - LOG_STD_MIN))
    rng = np.random.default_rng()

    def act(obs: np.ndarray, deterministic: bool) -> np.ndarray:
        out = _run(head, _run(trunk, obs))
        mean, log_std = np.split(out, 2, axis=-1)
        if not deterministic:
            log_std = lo + span * (np.tanh(log_std) + 1.0)
            mean = mean + np.exp(log_std) * rng.standard_normal(mean.shape, dtype=np.float32)
        return (np.tanh(mean) * scale + bias).astype(np.float32)

    return act


BUILDERS = {'ppo': _ppo, 'sac': _sac}


def numpy_actor(kind: str, algo) -> Optional[Callable[[np.ndarray, bool], np.ndarray]]:
    """``act(observation (D,), deterministic) -> action`` for a PPO/SAC algorithm object, or
    ``None`` where the NumPy copy would not be exact (the caller then acts through PyTorch)."""
    builder = BUILDERS.get(kind)
    if builder is None:
        return None
    try:
        fast = builder(algo)
    except (Unsupported, AttributeError):
        return None
    shape = tuple(algo.observation_space.shape)

    def act(observation, deterministic: bool) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != shape:
            raise ValueError(f'observation has shape {obs.shape}; expected {shape}')
        return fast(obs[None], deterministic)[0]

    return act
