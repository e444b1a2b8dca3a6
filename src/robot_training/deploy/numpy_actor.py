"""Acting without PyTorch on the control path: a frozen NumPy copy of a PPO, SAC or Dreamer actor.

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

:func:`numpy_dreamer` does the same for a Dreamer agent on vector observations: one posterior
step of the RSSM (symlog encoder, input layer, LayerNorm GRU, posterior head and its latent
sample) and the actor head, per tick. The prior head, which acting never reads, is skipped.
Through PyTorch that step costs 4 ms p50 and 20 ms p99 beside a learner; image observations
(convolutions) still act through PyTorch.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np


class Unsupported(Exception):
    """A module this NumPy copy does not reproduce exactly."""


def _f32(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def _layer_norm(layer) -> Callable[[np.ndarray], np.ndarray]:
    """LayerNorm over the last axis. One vector (the control path) takes dot products, about
    a third of the cost of ``mean``/``var`` at these sizes."""
    if not layer.elementwise_affine or len(layer.normalized_shape) != 1:
        raise Unsupported('LayerNorm without a per-feature affine')
    w, b, eps = _f32(layer.weight), (_f32(layer.bias) if layer.bias is not None else np.float32(0)), layer.eps
    inv_n = 1.0 / layer.normalized_shape[0]

    def norm(x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:
            centred = x - np.add.reduce(x) * np.float32(inv_n)
            return centred * (w * np.float32(1.0 / math.sqrt(float(centred.dot(centred)) * inv_n + eps))) + b
        centred = x - x.mean(-1, keepdims=True)
        return centred / np.sqrt((centred * centred).mean(-1, keepdims=True) + eps) * w + b

    return norm


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ops(module) -> List[Callable[[np.ndarray], np.ndarray]]:
    """One function per layer of an ``nn.Sequential`` of Linear, LayerNorm, Tanh, ReLU and SiLU
    layers (the layers of the PPO, SAC and Dreamer networks); any other is :class:`Unsupported`."""
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
        elif isinstance(layer, nn.SiLU):
            ops.append(_silu)
        elif isinstance(layer, nn.LayerNorm):
            ops.append(_layer_norm(layer))
        elif isinstance(layer, nn.Sequential):
            ops.extend(_ops(layer))
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


# --------------------------------------------------------------------------- Dreamer


def _symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def numpy_dreamer(agent) -> Optional[Tuple[Callable, Callable[[], Dict[str, np.ndarray]]]]:
    """``(policy(carry, observation (D,), deterministic) -> (action, carry), initial_carry)``
    for a :class:`~robot_training.reinforcement_learning.dreamer.DreamerAgent` on vector
    observations, or ``None`` where the copy would not be exact (images, unknown layers).

    The carry is a dict of NumPy arrays (``deter``, ``stoch``, the previous ``action`` in
    ``[-1, 1]``); actions come back in the agent's units, as :meth:`DreamerAgent.policy` gives them.
    """
    from robot_training.world_models.replay import denormalize_action

    model = agent.world_model
    encoder, rssm = model.encoder, model.rssm
    if encoder.is_dict or len(encoder.cnns) or encoder.mlp is None:
        return None
    try:
        embed_ops = _ops(encoder.mlp)
        img_in = _ops(rssm.img_in)
        gru_w = _f32(rssm.gru.linear.weight.T)
        if rssm.gru.linear.bias is not None:
            raise Unsupported('GRU projection with a bias')
        gru_norm = _layer_norm(rssm.gru.norm)
        posterior = _ops(rssm.posterior_net)
        actor = agent.behavior.actor
        actor_ops = _ops(actor.trunk) + _ops(actor.out)
    except (Unsupported, AttributeError):
        return None
    state_dim, stoch_size, action_dim = rssm.state_dim, rssm.stoch_size, agent.action_dim
    categorical, unimix = rssm.latent == 'categorical', np.float32(rssm.unimix)
    groups, classes = rssm.stoch_dim, rssm.num_classes
    min_std, max_std = np.float32(actor.min_std), np.float32(actor.max_std)
    latent_min_std = np.float32(rssm.min_std)
    low, high = agent.action_low.astype(np.float32), agent.action_high.astype(np.float32)
    shape = tuple(agent.observation_shape)
    rng = np.random.default_rng()
    eye = np.eye(classes, dtype=np.float32)

    def initial_carry() -> Dict[str, np.ndarray]:
        return {'deter': np.zeros(state_dim, np.float32), 'stoch': np.zeros(stoch_size, np.float32),
                'action': np.zeros(action_dim, np.float32)}

    def latent(raw: np.ndarray, deterministic: bool) -> np.ndarray:
        if categorical:
            logits = raw.reshape(groups, classes)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            if unimix > 0:
                probs = (1 - unimix) * probs + unimix / classes
            if deterministic:
                index = probs.argmax(-1)
            else:  # inverse CDF, one uniform number per latent variable (as the RSSM samples)
                u = rng.random((groups, 1), dtype=np.float32)
                index = np.minimum((np.cumsum(probs, -1) < u).sum(-1), classes - 1)
            return eye[index].reshape(-1)
        mean, std = raw[:groups], raw[groups:]
        if deterministic:
            return mean
        std = 2 * _sigmoid(std / 2) + latent_min_std
        return mean + std * rng.standard_normal(mean.shape, dtype=np.float32)

    def policy(carry, observation, deterministic: bool):
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != shape:
            raise ValueError(f'observation has shape {obs.shape}; expected {shape}')
        if carry is None:
            carry = initial_carry()
        embed = _run(embed_ops, _symlog(obs))
        x = _run(img_in, np.concatenate([carry['stoch'], carry['action']]))
        h = carry['deter']
        gates = gru_norm(np.concatenate([x, h]) @ gru_w)
        reset, candidate, update = gates[:state_dim], gates[state_dim:2 * state_dim], gates[2 * state_dim:]
        candidate = np.tanh(_sigmoid(reset) * candidate)
        update = _sigmoid(update - 1.0)
        deter = update * candidate + (1 - update) * h
        stoch = latent(_run(posterior, np.concatenate([deter, embed])), deterministic)
        out = _run(actor_ops, np.concatenate([stoch, deter]))
        mean, std = out[:action_dim], out[action_dim:]
        action = np.tanh(mean)
        if not deterministic:
            std = (max_std - min_std) * _sigmoid(std + 2.0) + min_std
            action = action + std * rng.standard_normal(action.shape, dtype=np.float32)
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        return denormalize_action(action, low, high), {'deter': deter.astype(np.float32), 'stoch': stoch, 'action': action}

    return policy, initial_carry
