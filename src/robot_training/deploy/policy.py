"""Deployable policies: one loader for every actor checkpoint, one small acting surface.

::

    policy = load_policy("policy_ppo_final.pt", interface=load_interface("config/interface.yaml"))
    policy.reset()                      # at the start of every episode
    action = policy.act(observation)    # NumPy in, NumPy out; recurrent state kept inside

Kinds: ``ppo``, ``sac`` (``PPOPolicy`` / ``SACPolicy``: the actor alone, no optimiser or
critic), ``bc`` (feed-forward or LSTM, :class:`BehavioralCloning`) and ``dreamer``
(:class:`DreamerAgent`, agent or full trainer checkpoint). Continuous PPO/SAC actors and
Dreamer agents on vector observations act through a NumPy copy of their layers
(:mod:`robot_training.deploy.numpy_actor`). A ``world_model`` checkpoint has no actor and is
refused, as are missing files, files that are not robot_training checkpoints, and checkpoints
whose observation/action sizes or interface fingerprint differ from the interface the policy
is deployed with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from robot_training.checkpoint import CheckpointError, file_sha256, load_checkpoint
from robot_training.deploy.numpy_actor import numpy_actor, numpy_dreamer

PathLike = Union[str, os.PathLike]


class DeployError(RuntimeError):
    """A checkpoint that cannot be deployed (one line saying why)."""


class DeployedPolicy:
    """One loaded actor: ``reset()`` and ``act(observation) -> action``.

    ``observation_shape`` is ``(D,)`` (or a dict of shapes for image policies), ``action_dim``
    the action size; ``recurrent`` says whether :meth:`reset` matters.
    """

    def __init__(self, *, kind: str, path: Path, sha256: str, interface_fingerprint: Optional[str],
                 observation_shape: Any, action_dim: int, recurrent: bool,
                 act_fn: Callable[[Any, Any, bool], Tuple[np.ndarray, Any]],
                 initial_state: Callable[[], Any], deterministic: bool = True, backend: str = "torch"):
        self.kind = kind
        self.backend = backend  # "numpy": a frozen NumPy copy of the actor acts (deploy/numpy_actor.py)
        self.path = path
        self.sha256 = sha256
        self.interface_fingerprint = interface_fingerprint
        self.observation_shape = observation_shape
        self.action_dim = int(action_dim)
        self.recurrent = recurrent
        self.deterministic = deterministic
        self._act_fn = act_fn
        self._initial_state = initial_state
        self._state = initial_state()

    def reset(self) -> None:
        """Forget the recurrent state (no-op for feed-forward policies)."""
        self._state = self._initial_state()

    def adopt_state(self, other: Optional["DeployedPolicy"]) -> bool:
        """Continue from ``other``'s recurrent state when it fits (same kind, same shapes)."""
        if (other is None or not self.recurrent or other.kind != self.kind or other.backend != self.backend
                or other._state is None):
            return False
        mine, theirs = self._initial_state(), other._state
        if not _same_shapes(mine, theirs):
            return False
        self._state = theirs
        return True

    def act(self, observation) -> np.ndarray:
        action, self._state = self._act_fn(observation, self._state, self.deterministic)
        return np.asarray(action, dtype=np.float64).reshape(self.action_dim)

    def describe(self) -> str:
        return f"{self.kind} policy {self.path.name} (sha256 {self.sha256[:12]})"

    def __repr__(self) -> str:
        return (f"DeployedPolicy(kind={self.kind!r}, path='{self.path}', observation_shape={self.observation_shape}, "
                f"action_dim={self.action_dim}, recurrent={self.recurrent})")


def _same_shapes(a: Any, b: Any) -> bool:
    """Do two recurrent states (tensors, tuples or dicts of them; None = initial) match in shape?"""
    if a is None:
        return True  # an initial state of None is filled in on the first step: any state fits
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_shapes(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same_shapes(x, y) for x, y in zip(a, b))
    return getattr(a, "shape", None) == getattr(b, "shape", None)


# --------------------------------------------------------------------------- one loader per kind


def torch_actor(path: Path, kind: str, data: Dict[str, Any]):
    """The PPO / SAC actor (``PPOPolicy`` / ``SACPolicy``, its trainer's own torch modules) of a
    checkpoint already read."""
    from robot_training.algorithms import REGISTRY, resolve
    from robot_training.config import Config, config_from_dict

    config = config_from_dict(data["config"], source=str(path)) if data.get("config") is not None else Config()
    try:
        return resolve(REGISTRY[kind].actor)(data, config)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"does not fit a {kind} policy ({exc})") from None


def _load_actor(path: Path, kind: str, data: Dict[str, Any]):
    """PPO / SAC: only what acting needs (:func:`torch_actor`); continuous actors act through a
    NumPy copy of their layers."""
    policy = torch_actor(path, kind, data)
    obs_space, act_space = policy.observation_space, policy.action_space
    if getattr(act_space, "shape", None) is None or len(act_space.shape) != 1:
        raise DeployError(f"{path}: {kind} policy with action space {act_space}: only continuous (Box) "
                          "actions can be deployed on an interface")

    fast = numpy_actor(kind, policy)  # the actor's own layers in NumPy (None: not exact for this one)

    def act(obs, state, deterministic):
        if fast is not None:
            return fast(obs, deterministic), state
        return policy.predict(np.asarray(obs, dtype=np.float32), deterministic=deterministic), state

    return dict(observation_shape=tuple(obs_space.shape), action_dim=int(act_space.shape[0]), recurrent=False,
                act_fn=act, initial_state=lambda: None, backend='numpy' if fast is not None else 'torch')


def _load_bc(path: Path, kind: str, data: Dict[str, Any]):
    from robot_training.supervised_learning.bc import BehavioralCloning

    bc = BehavioralCloning().load(path)
    bc.model.eval()

    def act(obs, state, deterministic):
        return bc.step(np.asarray(obs, dtype=np.float32), state, deterministic=deterministic)

    return dict(observation_shape=(int(data["observation_dim"]),), action_dim=int(data["action_dim"]),
                recurrent=bool(bc.cfg.use_sequences), act_fn=act, initial_state=lambda: bc.initial_state(1))


def _load_dreamer(path: Path, kind: str, data: Dict[str, Any]):
    from robot_training.reinforcement_learning.dreamer import DreamerAgent

    agent = DreamerAgent.from_checkpoint(path)
    fast = numpy_dreamer(agent)  # vector observations: the posterior step and actor in NumPy
    if fast is not None:
        step, initial = fast
        return dict(observation_shape=agent.observation_shape, action_dim=agent.action_dim, recurrent=True,
                    act_fn=lambda obs, carry, deterministic: step(carry, obs, deterministic),
                    initial_state=initial, backend='numpy')

    def act(obs, carry, deterministic):
        return agent.policy(carry, obs, deterministic=deterministic)

    return dict(observation_shape=agent.observation_shape, action_dim=agent.action_dim, recurrent=True,
                act_fn=act, initial_state=lambda: None)


def import_loaders() -> None:
    """Import what every loader needs (a hot-reloading actor does it once, at start: the
    first load otherwise spends 2 s importing, holding the interpreter against the control
    ticks). The first optimiser built in a process imports torch._dynamo, the largest part."""
    import torch

    import robot_training.policies.train_policy  # noqa: F401
    import robot_training.reinforcement_learning.dreamer  # noqa: F401
    import robot_training.supervised_learning.bc  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


#: algorithm family (robot_training.algorithms) → loader of its deployable checkpoints
FAMILY_LOADERS: Dict[str, Callable] = {
    "policy": _load_actor,
    "supervised": _load_bc,
    "dreamer": _load_dreamer,
}


def loader_for(kind: Optional[str]) -> Optional[Callable]:
    """The loader of a checkpoint ``kind`` (an algorithm of the registry with an actor), or None."""
    from robot_training.algorithms import REGISTRY

    entry = REGISTRY.get(kind) if isinstance(kind, str) else None
    return FAMILY_LOADERS.get(entry.family) if entry is not None and entry.actor is not None else None


def deployable_kinds() -> list:
    from robot_training.algorithms import names

    return [n for n in names(deployable=True) if loader_for(n) is not None]


def _check_interface(path: Path, interface, fingerprint: Optional[str], obs_shape, action_dim: int) -> None:
    if fingerprint and fingerprint != interface.fingerprint:
        raise DeployError(f"{path}: trained with interface {fingerprint[:12]}, deployed with "
                          f"{interface.name or interface.source} {interface.fingerprint[:12]}: "
                          "the observations or actions differ (retrain, or use the interface it was trained with)")
    expected = interface.observation_shape
    shape = obs_shape
    if isinstance(expected, tuple) and not isinstance(shape, dict):
        shape = tuple(int(s) for s in shape)
    if shape != expected:
        raise DeployError(f"{path}: policy observes {shape}, interface {interface.source} gives {expected}")
    if action_dim != interface.action_dim:
        raise DeployError(f"{path}: policy outputs {action_dim} action values, interface {interface.source} "
                          f"expects {interface.action_dim}")


def load_policy(path: PathLike, interface=None, deterministic: bool = True) -> DeployedPolicy:
    """Load an actor checkpoint of any kind; with ``interface``, check that it fits.

    Raises :class:`DeployError` with one line saying why a checkpoint is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{path}: checkpoint not found" if not path.exists() else f"{path}: not a file")
    try:
        data = load_checkpoint(path)
    except CheckpointError as exc:
        raise DeployError(str(exc)) from None
    except Exception as exc:  # torch raises many kinds on a file that is not a zip/pickle
        raise DeployError(f"{path}: not a robot_training checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    kind = data.get("kind")
    if kind == "world_model":
        raise DeployError(f"{path}: a world-model checkpoint has no actor to deploy "
                          f"(train Dreamer on it, or deploy a {'/'.join(deployable_kinds())} checkpoint)")
    loader = loader_for(kind)
    if loader is None:
        raise DeployError(f"{path}: checkpoint kind {kind!r} cannot be deployed; one of {sorted(deployable_kinds())}")
    fingerprint = data.get("interface_fingerprint") or None
    try:
        parts = loader(path, kind, data)
    except DeployError:
        raise
    except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
        raise DeployError(f"{path}: cannot load the {kind} policy: {exc}") from None
    if interface is not None:
        _check_interface(path, interface, fingerprint, parts["observation_shape"], parts["action_dim"])
    return DeployedPolicy(kind=kind, path=path.resolve(), sha256=file_sha256(path), interface_fingerprint=fingerprint,
                          deterministic=deterministic, **parts)
