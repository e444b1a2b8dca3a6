"""The learner of the robot's learning loop: trains on every episode the robot has recorded
so far, while the robot acts, and hands its weights back as checkpoint files.

::

    learner = OnlineLearner("dreamer", interface, "data/loop", config=cfg)
    learner.resume()                      # newest checkpoint of the run, if any
    learner.run(stop_event)               # poll episodes → train → checkpoint, until stopped

This is DayDreamer's learner (Wu et al., CoRL 2022) over plain files: the recorder closes one
bag per episode, :class:`~robot_training.online.episodes.EpisodeFeed` hands each finished bag
to the learner exactly once (through the interface description, the dataset builder's code),
the learner trains at most ``online.updates_per_step`` updates per recorded env step (it
trains continuously when compute, not data, is the limit) and writes a checkpoint every
``online.checkpoint_every`` updates. ``on_checkpoint`` is told about each file (the trainer
node announces it on ``~/checkpoints``; the actor hot-reloads it). Neither side waits for
the other: the actor keeps acting with the newest weights it has.

After a crash (SIGKILL) a restarted learner resumes from its newest checkpoint (weights,
optimisers, update count, RNG) and rebuilds its replay from every finished episode in the
dataset folder, episodes recorded while it was down included.

Algorithms (:func:`loop_algorithms`, from :mod:`robot_training.algorithms`): ``dreamer``
(world model + actor-critic in imagination) and every off-policy learner (``sac``). PPO is on-policy: it needs fresh rollouts of the policy being
updated, not a stream of episodes recorded by earlier policies, so it is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from robot_training.checkpoint import checkpoint_directory, file_sha256, load_checkpoint, save_checkpoint
from robot_training.config import Config, resolve_device
from robot_training.online.episodes import EpisodeFeed, FeedEpisode
from robot_training.utils.logging import RunLogger
from robot_training.utils.priority import check_cpu_policy, set_thread_cpu_policy

log = logging.getLogger("robot_training.online")

PathLike = Union[str, os.PathLike]
CheckpointCallback = Callable[[Path, int, str, str, str], None]
"""``on_checkpoint(path, updates, sha256, interface_fingerprint, kind)``."""


class OnlineError(ValueError):
    """A loop that cannot run as configured (one line saying why)."""


# --------------------------------------------------------------------------- algorithms


class DreamerOnline:
    """Dreamer fed with recorded episodes (actions scaled to [-1, 1] with the interface's limits)."""

    kind = "dreamer"
    component = "dreamer"
    prefix = "dreamer_online"
    default_checkpoint_every = 25

    def __init__(self, interface, config: Config, device: str):
        from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer
        from robot_training.world_models.replay import SequenceReplay

        self.low = np.asarray(interface.action.low, np.float32)
        self.high = np.asarray(interface.action.high, np.float32)
        self.trainer = DreamerTrainer(interface.observation_shape, interface.action_dim, config, device,
                                      self.low, self.high)
        self.trainer.agent.interface_fingerprint = interface.fingerprint
        self.trainer.replay = SequenceReplay(self.trainer.config.dreamer.replay_capacity)
        self.config = self.trainer.config

    def default_updates_per_step(self) -> float:
        wm = self.config.world_model
        return self.config.dreamer.train_ratio / (wm.batch_size * wm.sequence_length)

    def add(self, trajectory) -> None:
        self.trainer.replay.add_trajectory(trajectory, self.low, self.high)

    @property
    def replay_steps(self) -> int:
        return len(self.trainer.replay)

    def can_update(self) -> bool:
        return len(self.trainer.replay) >= 2

    def update(self) -> Dict[str, float]:
        return self.trainer.train_step()

    @property
    def updates(self) -> int:
        return self.trainer.updates

    def save(self, path: Path, env_steps: int, episodes: int) -> Path:
        self.trainer.env_steps, self.trainer.episodes = int(env_steps), int(episodes)
        return self.trainer.save_checkpoint(path)

    def load(self, path: Path) -> None:
        self.trainer.load_checkpoint(path)


class OffPolicyOnline:
    """An off-policy learner of the ``policy`` family (SAC) fed with recorded transitions
    (actions in the interface's units). Its class comes from :mod:`robot_training.algorithms`;
    it needs the off-policy surface: ``replay``, ``train_step(batch)``, ``num_updates``,
    ``state_dict`` / ``load_state_dict`` and a config section with ``updates_per_step`` and
    ``batch_size``."""

    component = "policy"
    default_checkpoint_every = 250

    def __init__(self, interface, config: Config, device: str, name: str = "sac"):
        import gymnasium as gym

        from robot_training.algorithms import get, resolve

        entry = get(name, family="policy")
        self.kind, self.prefix = name, f"policy_{name}_online"
        if interface.observation_layout != "flat":
            raise OnlineError(f"{name} learns from vector observations; interface {interface.source} has image "
                              "streams (use algorithm dreamer)")
        self.fingerprint = interface.fingerprint
        obs_space = gym.spaces.Box(-np.inf, np.inf, interface.observation_shape, np.float32)
        act_space = gym.spaces.Box(np.asarray(interface.action.low, np.float32),
                                   np.asarray(interface.action.high, np.float32), dtype=np.float32)
        self.config = config
        self.section = getattr(config, entry.config_section)
        self.algo = resolve(entry.learner)(obs_space, act_space, config=config, seed=config.training.seed,
                                           device=device)

    def default_updates_per_step(self) -> float:
        # in real time a robot's steps, not compute, are scarce: twice the updates of a simulator run
        return 2.0 * float(self.section.updates_per_step)

    def add(self, trajectory) -> None:
        final = trajectory.final_observation
        obs = np.array(trajectory.observations, np.float32)  # a copy: cached bags are read-only memory maps
        last = obs[-1] if final is None else np.asarray(final, np.float32)
        next_obs = np.concatenate([obs[1:], last[None]], 0)
        self.algo.replay.add(obs, np.array(trajectory.actions), np.array(trajectory.rewards), next_obs,
                             np.array(trajectory.terminals, np.float32))

    @property
    def replay_steps(self) -> int:
        return len(self.algo.replay)

    def can_update(self) -> bool:
        return len(self.algo.replay) >= self.section.batch_size

    def update(self) -> Dict[str, float]:
        return self.algo.train_step(self.algo.replay.sample(self.section.batch_size))

    @property
    def updates(self) -> int:
        return self.algo.num_updates

    def save(self, path: Path, env_steps: int, episodes: int) -> Path:
        self.algo.num_timesteps = int(env_steps)
        state = self.algo.state_dict()
        state["env"] = None
        state["episodes"] = int(episodes)
        return save_checkpoint(path, self.kind, state, config=self.config.to_dict(),
                               interface_fingerprint=self.fingerprint)

    def load(self, path: Path) -> None:
        self.algo.load_state_dict(load_checkpoint(path, kind=self.kind, map_location=self.algo.device))


def loop_algorithms() -> List[str]:
    """The registry's algorithms that can learn in the loop: Dreamer and every off-policy one."""
    from robot_training.algorithms import REGISTRY

    return [a.name for a in REGISTRY.values() if a.family == "dreamer" or (a.family == "policy" and not a.on_policy)]


def check_algorithm(name: str) -> str:
    from robot_training.algorithms import REGISTRY

    entry = REGISTRY.get(name)
    if entry is not None and entry.family == "policy" and entry.on_policy:
        raise OnlineError(f"{name} is on-policy: it needs fresh rollouts of the policy being updated, not episodes "
                          "recorded by earlier policies; use algorithm sac (model-free) or dreamer in the loop")
    if name not in loop_algorithms():
        raise OnlineError(f"unknown loop algorithm {name!r}; one of {', '.join(sorted(loop_algorithms()))}")
    return name


def _online_adapter(name: str, interface, config: Config, device: str):
    if name == "dreamer":
        return DreamerOnline(interface, config, device)
    return OffPolicyOnline(interface, config, device, name=name)


# --------------------------------------------------------------------------- the learner


class OnlineLearner:
    def __init__(self, algorithm: str, interface, dataset_dir: PathLike, config: Optional[Config] = None,
                 checkpoint_dir: Optional[PathLike] = None, logger: Optional[RunLogger] = None,
                 on_checkpoint: Optional[CheckpointCallback] = None, device: Optional[str] = None):
        from robot_training.world_models.presets import resolve_size

        self.config = resolve_size(config or Config())
        self.interface = interface
        self.algorithm = check_algorithm(algorithm)
        self.device = resolve_device(device or self.config.training.device)
        self.algo = _online_adapter(algorithm, interface, self.config, self.device)
        online = self.config.online
        try:
            self.cpu_policy = check_cpu_policy(online.cpu_policy)
        except ValueError as exc:
            raise OnlineError(str(exc)) from None
        self.updates_per_step = (self.algo.default_updates_per_step() if online.updates_per_step is None
                                 else float(online.updates_per_step))
        self.checkpoint_every = int(online.checkpoint_every or self.algo.default_checkpoint_every)
        root = checkpoint_dir if checkpoint_dir is not None else self.config.training.checkpoint_dir
        self.directory = checkpoint_directory(root, self.algo.component, self.algo.kind)
        self.feed = EpisodeFeed(dataset_dir, interface)
        self.logger = logger
        self.on_checkpoint = on_checkpoint
        self.env_steps = 0
        self.episodes = 0
        self.returns: List[float] = []
        self.lengths: List[int] = []
        self.last_checkpoint: Optional[Path] = None
        self.checkpoints_written = 0
        self.resumed_from: Optional[Path] = None
        self.resumed_updates = 0
        self.update_seconds = 0.0
        self._last_saved_updates = -1
        self._metrics: Dict[str, float] = {}

    # ------------------------------------------------------------------ resume
    def checkpoints(self) -> List[Path]:
        """This run's loop checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        files = [p for p in self.directory.glob(f"{self.algo.prefix}_*.pt") if p.is_file()]
        return sorted(files, key=lambda p: p.stat().st_mtime_ns)

    def resume(self, path: Optional[PathLike] = None) -> Optional[Path]:
        """Continue from ``path`` or the newest loop checkpoint that loads (None when there is
        none); an unreadable newest file is skipped with a warning."""
        if path is None:
            for candidate in reversed(self.checkpoints()):
                try:
                    return self.resume(candidate)
                except Exception as exc:  # noqa: BLE001 - torn, foreign or not a checkpoint
                    log.warning("not resuming from %s: %s", candidate, exc)
            return None
        path = Path(path)
        self.algo.load(path)
        self.resumed_from, self.resumed_updates = path, self.algo.updates
        self._last_saved_updates = self.algo.updates
        log.info("resumed %s from %s at update %d", self.algorithm, path, self.algo.updates)
        return path

    # ------------------------------------------------------------------ data
    def ingest(self) -> List[FeedEpisode]:
        """Take every newly finished episode into the replay."""
        new = self.feed.poll()
        for episode in new:
            for trajectory in episode.trajectories:
                self.algo.add(trajectory)
            self.env_steps += episode.steps
            self.episodes += 1
            self.returns.append(episode.episode_return)
            self.lengths.append(episode.length)
            if self.logger is not None:
                self.logger.scalar("charts/episodic_return", episode.episode_return, self.env_steps)
                self.logger.scalar("charts/episodic_length", episode.length, self.env_steps)
                self.logger.scalar("charts/episodes", self.episodes, self.env_steps)
        return new

    # ------------------------------------------------------------------ training
    @property
    def updates(self) -> int:
        return self.algo.updates

    def allowed_updates(self) -> int:
        """Updates the data recorded so far pays for (the train ratio), minus those done."""
        starts = self.config.online.learning_starts
        if self.env_steps < starts or not self.algo.can_update():
            return 0
        budget = int(self.updates_per_step * self.env_steps)
        return max(0, budget - self.algo.updates)

    def train(self, max_seconds: float = 1.0) -> int:
        """Update until the budget is spent or ``max_seconds`` passed; checkpoint on the way."""
        done = 0
        deadline = time.perf_counter() + max_seconds
        while self.allowed_updates() > 0 and time.perf_counter() < deadline:
            start = time.perf_counter()
            metrics = self.algo.update()
            self.update_seconds += time.perf_counter() - start
            done += 1
            if self.logger is not None and self.algo.updates % 10 == 0:
                values = {k: float(v) for k, v in metrics.items()}
                self._metrics = values
                self.logger.scalars(values, self.env_steps)
                self.logger.scalar("charts/updates", self.algo.updates, self.env_steps)
                self.logger.scalar("charts/ms_per_update", 1000 * self.update_seconds /
                                   max(1, self.algo.updates - self.resumed_updates), self.env_steps)
            if self.algo.updates % self.checkpoint_every == 0:
                self.checkpoint()
        return done

    def checkpoint(self) -> Optional[Path]:
        """Write the current weights (atomic), announce them, prune old ones."""
        if self.algo.updates == self._last_saved_updates:
            return self.last_checkpoint
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.algo.prefix}_{self.algo.updates:09d}.pt"
        self.algo.save(path, self.env_steps, self.episodes)
        self._last_saved_updates = self.algo.updates
        self.last_checkpoint = path
        self.checkpoints_written += 1
        if self.on_checkpoint is not None:
            self.on_checkpoint(path, self.algo.updates, file_sha256(path), self.interface.fingerprint, self.algo.kind)
        self._prune()
        return path

    def _prune(self) -> None:
        keep = max(1, self.config.online.keep_checkpoints)
        for old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)

    def run(self, stop: Optional[threading.Event] = None, max_env_steps: Optional[int] = None,
            max_updates: Optional[int] = None, max_seconds: Optional[float] = None) -> Dict[str, float]:
        """Poll → train → checkpoint until ``stop`` is set or a budget is reached; a last
        checkpoint is written on the way out (the run can always resume from it)."""
        stop = stop or threading.Event()
        if not set_thread_cpu_policy(self.cpu_policy):
            log.info("online.cpu_policy %s is not available on this OS; training at normal priority", self.cpu_policy)
        start = time.monotonic()
        poll = self.config.online.poll_period_s
        last_poll = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now - last_poll >= poll or self.allowed_updates() == 0:
                    self.ingest()
                    last_poll = now
                if max_env_steps and self.env_steps >= max_env_steps:
                    break
                if max_updates and self.updates >= max_updates:
                    break
                if max_seconds and now - start >= max_seconds:
                    break
                if self.train(max_seconds=poll) == 0:
                    stop.wait(min(poll, 0.1))
        finally:
            try:
                self.ingest()  # the episodes the recorder finished while it was being stopped
            except Exception as exc:  # noqa: BLE001 - never lose the last checkpoint over it
                log.warning("last look at the dataset failed: %s", exc)
            if self.algo.updates > 0:
                self.checkpoint()
        return self.figures()

    # ------------------------------------------------------------------ reporting
    def figures(self) -> Dict[str, float]:
        recent = self.returns[-10:]
        done = self.algo.updates - self.resumed_updates
        return {
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "updates": self.algo.updates,
            "replay_steps": self.algo.replay_steps,
            "checkpoints": self.checkpoints_written,
            "last_return": self.returns[-1] if self.returns else float("nan"),
            "best_return": max(self.returns) if self.returns else float("nan"),
            "mean_return_10": float(np.mean(recent)) if recent else float("nan"),
            "ms_per_update": 1000 * self.update_seconds / done if done else float("nan"),
            "skipped_episodes": len(self.feed.problems),
            **{k: v for k, v in self._metrics.items() if k.startswith(("world_model/loss", "losses/qf_loss"))},
        }

