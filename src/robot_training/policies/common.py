"""Parts shared by the model-free learners: observation batching, episode statistics,
periodic checkpoints, and the one place that steps vector envs for them.

* :class:`VectorEnvLearner`: the base of PPO and SAC (spaces, env, seed, counters, the vector
  envs, ``save`` / ``load`` / ``from_state`` / ``close``).
* :class:`EnvLoop`: one ``learn`` call's stepping of the vector envs (step counter, episode
  returns, logging, progress bar); PPO's rollout and the off-policy collector both step
  through it.
* :class:`OffPolicyLearner`: the off-policy collection (random actions until
  ``learning_starts``, then :meth:`~OffPolicyLearner.explore`; every transition into the
  replay; ``updates_per_step`` calls of ``train_step`` per env step) and the replay's side
  file. A new off-policy algorithm subclasses it with its networks, ``explore``,
  ``train_step`` and ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, Union

import gymnasium as gym
import numpy as np
import torch

from robot_training.algorithms import get
from robot_training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from robot_training.config import Config
from robot_training.envs.make import EnvSpec, final_observations, make_vector_env, space_from_spec, space_spec
from robot_training.utils.logging import RunLogger, progress


def as_batch(observation, observation_shape) -> Tuple[np.ndarray, bool]:
    """``(batch, was_single)``: one observation gains a leading axis, a batch is kept."""
    obs = np.asarray(observation, dtype=np.float32)
    shape = tuple(observation_shape)
    if obs.shape == shape:
        return obs[None], True
    if obs.shape[1:] == shape:
        return obs, False
    raise ValueError(f"observation has shape {obs.shape}; expected {shape} or (N, {', '.join(map(str, shape))})")


class EpisodeStats:
    """Running returns and lengths of the episodes of ``num_envs`` vector envs."""

    def __init__(self, num_envs: int, window: int = 20):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.recent = deque(maxlen=window)
        self.completed = 0

    def step(self, rewards: np.ndarray, dones: np.ndarray):
        """Accumulate one step; return ``[(return, length), ...]`` of the episodes that ended."""
        self.returns += rewards
        self.lengths += 1
        finished = []
        for i in np.nonzero(dones)[0]:
            finished.append((float(self.returns[i]), int(self.lengths[i])))
            self.recent.append(float(self.returns[i]))
            self.returns[i] = 0.0
            self.lengths[i] = 0
            self.completed += 1
        return finished

    @property
    def mean_recent(self) -> Optional[float]:
        return float(np.mean(self.recent)) if self.recent else None


class Checkpointer:
    """Writes ``<prefix>_step<N>.pt`` every ``every`` steps (keeping the last ``keep``) and
    ``<prefix>_final.pt`` at the end. ``save_fn(path)`` does the writing."""

    _STEP = re.compile(r"_step(\d+)\.pt$")

    def __init__(self, directory, prefix: str, every: int, save_fn: Callable[[Path], None], keep: int = 3):
        self.directory = Path(directory)
        self.prefix = prefix
        self.every = int(every)
        self.save_fn = save_fn
        self.keep = keep
        self.next_at: Optional[int] = None
        self.last_path: Optional[Path] = None

    def maybe_save(self, step: int) -> Optional[Path]:
        if self.every <= 0:
            return None
        if self.next_at is None:
            self.next_at = (step // self.every + 1) * self.every
        if step < self.next_at:
            return None
        self.next_at = (step // self.every + 1) * self.every
        path = self.directory / f"{self.prefix}_step{step:09d}.pt"
        self.save_fn(path)
        self.last_path = path
        self._prune()
        return path

    def save_final(self) -> Path:
        path = self.directory / f"{self.prefix}_final.pt"
        self.save_fn(path)
        self.last_path = path
        return path

    def _prune(self) -> None:
        steps = sorted(self.directory.glob(f"{self.prefix}_step*.pt"))
        for old in steps[: max(0, len(steps) - self.keep)]:
            old.unlink(missing_ok=True)
            for side in old.parent.glob(old.name[:-3] + ".*"):
                side.unlink(missing_ok=True)


def latest_checkpoint(directory, prefix: str) -> Optional[Path]:
    """The most recently written ``<prefix>_*.pt`` in ``directory`` (None if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    files = [p for p in directory.glob(f"{prefix}_*.pt") if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: p.stat().st_mtime_ns)


def replay_path(checkpoint_path: Union[str, os.PathLike]) -> Path:
    """``policy_sac_step000001000.pt`` → ``policy_sac_step000001000.replay.npz``."""
    p = Path(checkpoint_path)
    return p.with_name(p.name[:-3] + ".replay.npz" if p.name.endswith(".pt") else p.name + ".replay.npz")


# ---------------------------------------------------------------------- stepping vector envs


class Transition(NamedTuple):
    """One step of ``num_envs`` vector envs (``next_observations``: after autoreset)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    dones: np.ndarray
    infos: Dict[str, Any]

    def final_observations(self) -> np.ndarray:
        """The true next observation of every sub-env (``final_obs`` where an episode ended)."""
        return final_observations(self.next_observations, self.infos, self.dones)


class EnvLoop:
    """One ``learn`` call's stepping of a learner's vector envs: :meth:`step` steps them,
    counts ``learner.num_timesteps``, logs finished episodes and moves the progress bar."""

    def __init__(self, learner: "VectorEnvLearner", num_envs: int, total_timesteps: int, reset_seed: int,
                 progress_bar: bool = False):
        if learner.env_spec is None:
            raise ValueError(f"{type(learner).__name__}.learn needs an environment: pass env= (a Gymnasium id "
                             "or factory)")
        self.learner, self.num_envs, self.total_timesteps = learner, int(num_envs), int(total_timesteps)
        self.envs = learner.vector_envs(self.num_envs)
        self.observations, _ = self.envs.reset(seed=reset_seed)
        self.stats = EpisodeStats(self.num_envs)
        self.bar = progress(total_timesteps, learner.algorithm, enabled=progress_bar)
        self.bar.update(learner.num_timesteps)
        self.start_time, self.start_steps = time.time(), learner.num_timesteps

    def step(self, actions: np.ndarray) -> Transition:
        learner = self.learner
        next_obs, rewards, term, trunc, infos = self.envs.step(actions)
        done = term | trunc
        learner.num_timesteps += self.num_envs
        self.bar.update(self.num_envs)
        for ret, length in self.stats.step(np.asarray(rewards, dtype=np.float64), done):
            if learner.logger is not None:
                learner.logger.scalar("charts/episodic_return", ret, learner.num_timesteps)
                learner.logger.scalar("charts/episodic_length", length, learner.num_timesteps)
            self.bar.set_postfix(ep_return=f"{ret:.1f}", refresh=False)
        step = Transition(self.observations, actions, rewards, next_obs, term, trunc, done, infos)
        self.observations = next_obs
        return step

    def steps_per_second(self) -> float:
        return (self.learner.num_timesteps - self.start_steps) / max(time.time() - self.start_time, 1e-9)

    def run(self, iteration: Callable[[], None], callback: Optional[Callable[[Any], Optional[bool]]]) -> None:
        """``iteration()`` until the budget is reached; ``callback(learner)`` after each (``False`` stops)."""
        try:
            while self.learner.num_timesteps < self.total_timesteps:
                iteration()
                if callback is not None and callback(self.learner) is False:
                    break
        finally:
            self.bar.close()


# ---------------------------------------------------------------------- the learners' base


class VectorEnvLearner:
    """A model-free learner over a flat Box observation space that trains in vector envs.

    Subclasses set ``algorithm`` (its registry name: ``self.cfg`` is the registry's
    ``config_section`` of ``config``) and ``counters`` (the step counters a checkpoint keeps),
    and implement :meth:`build` (networks, optimisers), ``learn``, ``train_step``, ``predict``
    and the checkpoint payload :meth:`payload` / :meth:`load_payload`.
    """

    algorithm = ""
    counters: Tuple[str, ...] = ("num_timesteps",)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Optional[Config] = None,
                 env: Optional[EnvSpec] = None, seed: int = 0, device: str = "cpu",
                 logger: Optional[RunLogger] = None):
        self.config = config or Config()
        self.cfg = getattr(self.config, get(self.algorithm).config_section)
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"{type(self).__name__} needs a flat Box observation space, got {observation_space}")
        self.observation_space, self.action_space = observation_space, action_space
        self.env_spec, self.seed, self.device = env, int(seed), torch.device(device)
        self.logger = logger
        for name in self.counters:
            setattr(self, name, 0)
        self.np_rng = np.random.default_rng(self.seed)
        self._envs = None
        self.build()

    def build(self) -> None:
        """Make the networks and optimisers (``self.cfg``, the spaces and ``self.device`` are set)."""
        raise NotImplementedError

    def vector_envs(self, num_envs: int):
        """This learner's vector envs (made at the first ``learn``, kept until :meth:`close`)."""
        if self._envs is None:
            self._envs = make_vector_env(self.env_spec, num_envs)
        return self._envs

    # ------------------------------------------------------------------ checkpoint payload
    def payload(self) -> Dict[str, Any]:
        """The weights, optimisers and normalisers of a checkpoint (plain values and tensors)."""
        raise NotImplementedError

    def load_payload(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`payload` wrote."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything needed to resume: the spaces, :meth:`payload`, the counters, seed and RNG state
        (not the replay: see :meth:`save_side_files`)."""
        state = {"algorithm": self.algorithm, "observation_space": space_spec(self.observation_space),
                 "action_space": space_spec(self.action_space)}
        state.update(self.payload())
        state.update({name: getattr(self, name) for name in self.counters})
        state.update(seed=self.seed, rng=rng_state(self.np_rng))
        return state

    def load_state_dict(self, state: dict, restore_rng: bool = True) -> None:
        self.load_payload(state)
        for name in self.counters:
            setattr(self, name, int(state[name]))
        if restore_rng:
            set_rng_state(state["rng"], self.np_rng)

    # ------------------------------------------------------------------ checkpoint files
    def save(self, path: Union[str, os.PathLike], kind: Optional[str] = None, **extra) -> Path:
        """Write ``state_dict()`` (plus ``extra`` keys) as checkpoint ``path`` of ``kind`` (the
        algorithm's name), and its side files (the replay of an off-policy learner) beside it."""
        path = Path(path)
        state = self.state_dict()
        state.update(self.save_side_files(path))
        state.update(extra)
        return save_checkpoint(path, kind or self.algorithm, state, config=self.config.to_dict())

    def load(self, path: Union[str, os.PathLike], kind: Optional[str] = None, side_files: bool = True):
        """Restore a checkpoint written by :meth:`save` into this learner (same spaces and sizes)."""
        self.load_state_dict(load_checkpoint(path, kind=kind or self.algorithm, map_location=self.device))
        if side_files:
            self.load_side_files(path)
        return self

    def save_side_files(self, path: Path) -> Dict[str, Any]:
        """Write what lives beside checkpoint ``path``; the keys to add to it (none here)."""
        return {}

    def load_side_files(self, path: Path) -> None:
        """Read what :meth:`save_side_files` wrote beside ``path``, when it is there."""

    @classmethod
    def from_state(cls, state: dict, config: Config, env: Optional[EnvSpec] = None, device: str = "cpu",
                   logger: Optional[RunLogger] = None):
        algo = cls(space_from_spec(state["observation_space"]), space_from_spec(state["action_space"]),
                   config=config, env=env, seed=int(state.get("seed", 0)), device=device, logger=logger)
        algo.load_state_dict(state)
        return algo

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


class OffPolicyLearner(VectorEnvLearner):
    """A learner from a replay of transitions. Subclasses build ``self.replay`` (a
    :class:`~robot_training.data.replay.ReplayBuffer`) and their networks, and implement
    :meth:`explore` and ``train_step(batch)`` (counting ``num_updates``). The config section
    needs ``num_envs``, ``learning_starts``, ``batch_size`` and ``updates_per_step``."""

    counters = ("num_timesteps", "num_updates")

    def explore(self, observations: np.ndarray) -> np.ndarray:
        """Actions (env units) to collect with, for a batch of observations."""
        raise NotImplementedError

    def random_actions(self, num_envs: int) -> np.ndarray:
        """Uniform actions in the Box bounds (before ``learning_starts``)."""
        low, high = self.action_space.low, self.action_space.high
        return self.np_rng.uniform(low, high, size=(num_envs, *self.action_space.shape)).astype(np.float32)

    def learn(self, total_timesteps: int, callback: Optional[Callable[[Any], Optional[bool]]] = None,
              progress_bar: bool = False, log_every: int = 1000):
        """Train until ``num_timesteps`` reaches ``total_timesteps``; ``callback(self)`` runs
        after every env step (returning ``False`` stops)."""
        loop = EnvLoop(self, self.cfg.num_envs, total_timesteps, self.seed + self.num_timesteps, progress_bar)
        loop.run(lambda: self._collect_step(loop, log_every), callback)
        return self

    def _collect_step(self, loop: EnvLoop, log_every: int) -> None:
        """One env step into the replay, then its updates."""
        cfg, n_envs = self.cfg, loop.num_envs
        if self.num_timesteps < cfg.learning_starts:
            actions = self.random_actions(n_envs)
        else:
            actions = self.explore(loop.observations)
        step = loop.step(actions)
        self.replay.add(step.observations, actions, step.rewards, step.final_observations(), step.terminated)
        if self.num_timesteps >= cfg.learning_starts and len(self.replay) >= cfg.batch_size:
            losses: Dict[str, torch.Tensor] = {}
            for _ in range(cfg.updates_per_step):
                losses = self.train_step(self.replay.sample(cfg.batch_size))
            if self.logger is not None and self.num_timesteps % log_every < n_envs and losses:
                self.logger.scalars({k: float(v) for k, v in losses.items()}, self.num_timesteps, prefix="losses/")
                self.logger.scalar("charts/SPS", loop.steps_per_second(), self.num_timesteps)

    # ------------------------------------------------------------------ the replay file
    def save_replay(self, path) -> None:
        self.replay.save(path)

    def load_replay(self, path) -> None:
        self.replay.load(path)

    def save_side_files(self, path: Path) -> Dict[str, Any]:
        self.save_replay(replay_path(path))
        return {"replay_file": replay_path(path).name}

    def load_side_files(self, path: Path) -> None:
        if replay_path(path).is_file():
            self.load_replay(replay_path(path))


class DeployedPolicy:
    """What acting with a :class:`VectorEnvLearner`'s checkpoint needs, and nothing else: the
    spaces and the networks :meth:`build` makes from the payload (no optimisers, no replay).
    The deploy loader builds these, not a learner."""

    algorithm = ""

    def __init__(self, state: dict, config: Config, device: str = "cpu"):
        self.observation_space = space_from_spec(state["observation_space"])
        self.action_space = space_from_spec(state["action_space"])
        self.device = torch.device(device)
        self.build(state, getattr(config, get(self.algorithm).config_section))

    def build(self, state: dict, cfg) -> None:
        """Make the acting networks from ``state`` (``cfg``: the algorithm's config section), in eval mode."""
        raise NotImplementedError
