"""Train a Dreamer agent offline (trajectories only) or online (the seed's ``train_dreamer``).

Each update follows the seed's algorithm on a ``batch_size × sequence_length`` replay batch:

1. train the world model on the real sequences;
2. imagine ``imagine_horizon`` steps from every posterior state with the actor;
3. update the actor on the λ-returns of the imagined rewards;
4. update the critic (value) towards those returns, then the slow critic.

Offline, ``num_steps`` counts gradient updates on the given trajectories. Online (an
``env_factory``), ``num_steps`` counts environment steps: ``dreamer.num_envs`` copies of the
env step together (a ``SyncVectorEnv``, one batched policy call per step, one replay stream
per env), the first ``prefill_steps`` use random actions, then the current actor acts
(sampling) and every environment step earns ``train_ratio / (batch_size × sequence_length)``
updates::

    trainer = train_dreamer(env_factory=lambda: gym.make("Pendulum-v1"), num_steps=20_000)
    trainer.agent.act(observation)
    trainer.agent.save("agent.pt")
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from robot_training.checkpoint import (CheckpointError, checkpoint_directory, load_checkpoint, rng_state,
                                       save_checkpoint, set_rng_state)
from robot_training.config import Config, resolve_device
from robot_training.data.trajectory import Trajectory, common_interface_fingerprint
from robot_training.networks.encoders import ObservationShape
from robot_training.reinforcement_learning.dreamer import CHECKPOINT_KIND, DreamerAgent
from robot_training.envs.factories import EnvFactory, action_limits, make_env_factory
from robot_training.envs.make import final_observations, make_vector_env
from robot_training.policies.common import EpisodeStats
from robot_training.utils import distributed
from robot_training.utils.logging import RunLogger, progress, run_name
from robot_training.utils.seeding import set_seed
from robot_training.utils.optim import adam
from robot_training.utils.stopping import save_on_stop
from robot_training.world_models.presets import resolve_size
from robot_training.world_models.replay import SequenceReplay, action_bounds, denormalize_action, to_torch
from robot_training.world_models.train_world_model import autocast, check_observation_shape, resolve_resume

log = logging.getLogger("robot_training.dreamer")
ALGORITHM = "dreamer"


class DreamerTrainer:
    """A :class:`DreamerAgent`, its optimisers and replay; the learner surface
    (:class:`robot_training.learner.Learner`): ``learn`` (offline or online, see the module),
    ``train_step`` (one :meth:`update`), ``predict`` (the agent acting), ``save`` / ``load``."""

    def __init__(self, observation_shape: ObservationShape, action_dim: int, config: Optional[Config] = None,
                 device: Optional[str] = None, action_low=None, action_high=None,
                 env_factory: Optional[EnvFactory] = None, logger: Optional[RunLogger] = None):
        self.config = resolve_size(config or Config())
        self.device = resolve_device(device or self.config.training.device)
        self.agent = DreamerAgent(observation_shape, action_dim, self.config, self.device, action_low, action_high)
        wm = self.config.world_model
        self.world_model_optimizer = adam(self.agent.world_model.parameters(), lr=wm.learning_rate, eps=1e-8)
        self.actor_optimizer, self.critic_optimizer = self.agent.behavior.optimizers()
        self.env_factory = env_factory
        self.logger = logger
        self.replay: Optional[SequenceReplay] = None
        self.rng = np.random.default_rng(self.config.training.seed)
        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        self.update_seconds = 0.0
        self.last_eval_return: Optional[float] = None
        self._update_budget = 0.0
        self._losses = None  # world_model.loss and behavior.loss, through DDP under torchrun
        self._update_fn = self._update
        if self.config.dreamer.compile:
            self._update_fn = torch.compile(self._update, dynamic=False)

    # ------------------------------------------------------------------ one update
    def _update(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        agent = self.agent
        wm, behavior = agent.world_model, agent.behavior
        precision = self.config.world_model.precision
        wm_loss, behavior_loss = self._losses
        with autocast(self.device, precision):
            wm_total, wm_losses, posterior, wm_metrics = wm_loss(batch)
        self.world_model_optimizer.zero_grad(set_to_none=True)
        wm_total.backward()
        wm_grad = torch.nn.utils.clip_grad_norm_(wm.parameters(), self.config.world_model.grad_clip)
        self.world_model_optimizer.step()

        with autocast(self.device, precision):
            losses, metrics = behavior_loss(wm, posterior, batch["is_terminal"])
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (losses["actor"] + losses["critic"]).backward()  # disjoint parameters and graphs
        actor_grad = torch.nn.utils.clip_grad_norm_(behavior.actor.parameters(), self.config.dreamer.actor_grad_clip)
        critic_grad = torch.nn.utils.clip_grad_norm_(behavior.critic.parameters(), self.config.dreamer.critic_grad_clip)
        self.actor_optimizer.step()
        self.critic_optimizer.step()

        out = {f"world_model/{k}_loss": v.detach().float().mean() for k, v in wm_losses.items()}
        out.update({f"world_model/{k}": v for k, v in wm_metrics.items()})
        out.update({"world_model/loss": wm_total.detach(), "world_model/grad_norm": wm_grad,
                    "losses/actor": losses["actor"].detach(), "losses/critic": losses["critic"].detach(),
                    "losses/actor_grad_norm": actor_grad, "losses/critic_grad_norm": critic_grad})
        out.update({f"imagination/{k}": v for k, v in metrics.items()})
        return out

    def update(self, batch: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
        """One world-model + actor + critic update on ``batch`` (sampled from the replay if None;
        under torchrun a given batch is this rank's rows of the global one)."""
        if self._losses is None:
            if distributed.active():
                distributed.local_batch_size(self.config.world_model.batch_size, "world_model.batch_size")
            self._losses = (distributed.parallel(self.agent.world_model, "loss"),
                            distributed.parallel(self.agent.behavior, "loss"))
        if batch is None:
            batch = self.sample(distributed.batch_rows(self.config.world_model.batch_size))
        start = time.perf_counter()
        with distributed.batch_shard():
            metrics = self._update_fn(to_torch(batch, self.device))
        self.updates += 1
        if self.updates % self.config.dreamer.slow_critic_update == 0:
            self.agent.behavior.update_slow_critic()
        self.update_seconds += time.perf_counter() - start
        return metrics

    def train_step(self, batch: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
        """The learner surface's name for :meth:`update`."""
        return self.update(batch)

    def sample(self, rows: Optional[slice] = None) -> Dict[str, Any]:
        """A global batch (``rows``: the rows of it this rank trains on)."""
        wm = self.config.world_model
        return self.replay.sample(wm.batch_size, min(wm.sequence_length, self.replay.max_sequence_length), self.rng,
                                  rows)

    # ------------------------------------------------------------------ data
    def add_trajectories(self, trajectories: Sequence[Trajectory], capacity: Optional[int] = None) -> None:
        trajectories = list(trajectories)
        check_observation_shape(self.agent.observation_shape, trajectories)
        self.agent.interface_fingerprint = common_interface_fingerprint(trajectories)
        needed = sum(len(t) + 1 for t in trajectories)
        if self.replay is None:  # online, the streams of the envs (the trajectories spread over them)
            self.replay = SequenceReplay(capacity or needed, self.config.dreamer.num_envs if self.env_factory else 1)
        for trajectory in trajectories:
            self.replay.add_trajectory(trajectory, self.agent.action_low, self.agent.action_high)

    # ------------------------------------------------------------------ offline
    def train_offline(self, num_updates: int, show_progress: bool = False, log_every: int = 50,
                      checkpoint_every: int = 0, checkpoint_dir: Optional[Path] = None) -> Dict[str, float]:
        if self.replay is None or len(self.replay) == 0:
            raise ValueError("offline Dreamer needs trajectories (add_trajectories) first")
        metrics: Dict[str, float] = {}
        bar = progress(num_updates, "dreamer (offline)", enabled=show_progress, unit="update")
        try:
            with save_on_stop(lambda: self._save_at_stop(checkpoint_dir, self.updates)):
                for _ in range(num_updates):
                    metrics = self.update()
                    bar.update(1)
                    self._log(metrics, self.updates, log_every)
                    if checkpoint_every and checkpoint_dir and self.updates % checkpoint_every == 0:
                        self.save_checkpoint(Path(checkpoint_dir) / f"dreamer_{self.updates}.pt")
        finally:
            bar.close()
        return {k: float(v) for k, v in metrics.items()}

    def _save_at_stop(self, checkpoint_dir: Optional[Path], number: int):
        """A stop between two updates: the state is whole; ``--resume`` continues from it
        (named like the periodic checkpoints: updates offline, env steps online)."""
        if checkpoint_dir is None:
            return None, number
        return self.save_checkpoint(Path(checkpoint_dir) / f"dreamer_{number}.pt"), number

    # ------------------------------------------------------------------ online
    def train_online(self, num_env_steps: int, show_progress: bool = False, log_every: int = 100,
                     checkpoint_every: int = 0, checkpoint_dir: Optional[Path] = None,
                     eval_episodes: Optional[int] = None) -> Dict[str, float]:
        """Collect with the current actor in ``dreamer.num_envs`` envs and train at ``train_ratio``
        until ``num_env_steps`` (a vector step counts ``num_envs``; evaluations and checkpoints
        come when the count passes a multiple of their period)."""
        if self.env_factory is None:
            raise ValueError("online Dreamer needs an env_factory")
        cfg, d = self.config, self.config.dreamer
        wm, num_envs = cfg.world_model, d.num_envs
        eval_episodes = cfg.training.eval_episodes if eval_episodes is None else eval_episodes
        if self.replay is None:
            self.replay = SequenceReplay(min(d.replay_capacity, num_env_steps + 10_000), num_envs)
        elif self.replay.num_streams != num_envs:
            raise ValueError(f"the replay has {self.replay.num_streams} stream(s) but dreamer.num_envs is {num_envs}")
        envs = make_vector_env(self.env_factory, num_envs)
        updates_per_step = d.train_ratio / (wm.batch_size * wm.sequence_length)
        metrics: Dict[str, float] = {}
        stats = EpisodeStats(num_envs)
        observations, _ = envs.reset(seed=cfg.training.seed + self.env_steps)  # env i: seed + env_steps + i
        self._start_episodes(observations, np.arange(num_envs))
        carry = None  # the actor's recurrent state, batch num_envs (from its first step after the prefill)
        bar = progress(num_env_steps, "dreamer (online)", enabled=show_progress, unit="step")
        bar.update(self.env_steps)
        try:
            with save_on_stop(lambda: self._save_at_stop(checkpoint_dir, self.env_steps)):
                while self.env_steps < num_env_steps:
                    before = self.env_steps
                    if before < d.prefill_steps:
                        actions = self.rng.uniform(-1, 1, (num_envs, self.agent.action_dim)).astype(np.float32)
                    else:
                        _, carry = self.agent.policy(carry, observations, deterministic=False)
                        actions = carry["action"].cpu().numpy()
                    observations, rewards, terminated, truncated, infos = envs.step(
                        denormalize_action(actions, self.agent.action_low, self.agent.action_high))
                    done = terminated | truncated
                    self.env_steps += num_envs
                    bar.update(num_envs)
                    self.replay.add_env_steps(final_observations(observations, infos, done), actions, rewards,
                                              np.zeros(num_envs, bool), terminated)
                    for episode_return, episode_length in stats.step(rewards, done):
                        self.episodes += 1
                        if self.logger is not None:
                            self.logger.scalar("charts/episodic_return", episode_return, self.env_steps)
                            self.logger.scalar("charts/episodic_length", episode_length, self.env_steps)
                    if done.any():  # SAME_STEP autoreset: those envs' observations begin new episodes
                        self._start_episodes(observations, np.flatnonzero(done))
                        if carry is not None:
                            carry = self.agent.reset_carry(carry, done)
                    # of this vector step's env steps before+1 ... env_steps, those at or past the prefill
                    trained_steps = max(0, self.env_steps - max(before, d.prefill_steps - 1))
                    if trained_steps and self.replay.max_sequence_length >= 2:
                        self._update_budget += trained_steps * updates_per_step
                        while self._update_budget >= 1:
                            self._update_budget -= 1
                            metrics = self.update()
                            self._log(metrics, self.env_steps, log_every, by_updates=True)
                    if eval_episodes and passed_multiple(before, self.env_steps, d.eval_every):
                        self.last_eval_return = self.evaluate(eval_episodes)
                        bar.set_postfix(eval_return=f"{self.last_eval_return:.1f}", updates=self.updates)
                        if self.logger is not None:
                            self.logger.scalar("charts/eval_return", self.last_eval_return, self.env_steps)
                    if checkpoint_dir and passed_multiple(before, self.env_steps, checkpoint_every):
                        self.save_checkpoint(Path(checkpoint_dir) / f"dreamer_{self.env_steps}.pt")
        finally:
            bar.close()
            envs.close()
        return {k: float(v) for k, v in metrics.items()}

    def _start_episodes(self, observations, envs: np.ndarray) -> None:
        """The first observations of ``envs``' new episodes into their replay streams (no action
        or reward led to them)."""
        n = len(envs)
        first = ({k: v[envs] for k, v in observations.items()} if isinstance(observations, Mapping)
                 else observations[envs])
        self.replay.add_env_steps(first, np.zeros((n, self.agent.action_dim), np.float32), np.zeros(n, np.float32),
                                  np.ones(n, bool), np.zeros(n, bool), envs)

    def learn(self, num_steps: int, trajectories: Optional[Sequence[Trajectory]] = None, show_progress: bool = False,
              checkpoint_every: int = 0, checkpoint_dir: Optional[Path] = None,
              eval_episodes: Optional[int] = None) -> Dict[str, float]:
        """Train to ``num_steps``: gradient updates offline (no ``env_factory``), env steps
        online; ``trajectories``, if given, go into the replay first. A loaded trainer
        continues its count. Returns the last update's metrics."""
        if trajectories:
            capacity = None if self.env_factory is None else sum(len(t) + 1 for t in trajectories) + min(
                self.config.dreamer.replay_capacity, num_steps + 10_000)
            self.add_trajectories(trajectories, capacity)
        if self.env_factory is None:
            return self.train_offline(max(0, num_steps - self.updates), show_progress,
                                      checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir)
        return self.train_online(num_steps, show_progress, checkpoint_every=checkpoint_every,
                                 checkpoint_dir=checkpoint_dir, eval_episodes=eval_episodes)

    def predict(self, observation, deterministic: bool = True) -> np.ndarray:
        """The agent's action for ``observation`` (:meth:`DreamerAgent.act`: it keeps the
        recurrent state between calls; ``agent.reset()`` at an episode's start)."""
        return self.agent.act(observation, deterministic)

    def evaluate(self, num_episodes: int = 10, deterministic: bool = True, seed: int = 10_000) -> float:
        """Mean return of ``num_episodes`` episodes acting with a fresh carry each."""
        env = self.env_factory()
        returns = []
        try:
            for episode in range(num_episodes):
                observation, _ = env.reset(seed=seed + episode)
                carry, total, done = None, 0.0, False
                while not done:
                    action, carry = self.agent.policy(carry, observation, deterministic)
                    observation, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
        finally:
            env.close()
        return float(np.mean(returns))

    def _log(self, metrics, step: int, every: int, by_updates: bool = False) -> None:
        if self.logger is None or not metrics or self.updates % every:
            return
        self.logger.scalars({k: float(v) for k, v in metrics.items()}, step)
        self.logger.scalar("charts/updates", self.updates, step)
        if self.updates:
            self.logger.scalar("charts/ms_per_update", 1000 * self.update_seconds / self.updates, step)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Union[str, os.PathLike]) -> Path:
        """Agent plus optimisers, counters and RNG states (the replay is not saved)."""
        payload = self.agent.state_dict()
        payload.update({
            "optimizers": {"world_model": self.world_model_optimizer.state_dict(),
                           "actor": self.actor_optimizer.state_dict(),
                           "critic": self.critic_optimizer.state_dict()},
            "env_steps": self.env_steps, "updates": self.updates, "episodes": self.episodes,
            "rng": rng_state(self.rng),
        })
        return save_checkpoint(path, CHECKPOINT_KIND, payload, config=self.config.to_dict(),
                               interface_fingerprint=self.agent.interface_fingerprint)

    def load_checkpoint(self, path: Union[str, os.PathLike]) -> None:
        data = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=self.device)
        self.agent.load_state_dict(data, str(path))
        if "optimizers" not in data:
            raise CheckpointError(f"{path}: an agent file without optimiser state; use agent.load() instead")
        self.world_model_optimizer.load_state_dict(data["optimizers"]["world_model"])
        self.actor_optimizer.load_state_dict(data["optimizers"]["actor"])
        self.critic_optimizer.load_state_dict(data["optimizers"]["critic"])
        self.env_steps, self.updates, self.episodes = int(data["env_steps"]), int(data["updates"]), int(data["episodes"])
        set_rng_state(data["rng"], self.rng)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """:meth:`save_checkpoint`."""
        return self.save_checkpoint(path)

    def load(self, path: Union[str, os.PathLike]) -> "DreamerTrainer":
        """:meth:`load_checkpoint`; returns the trainer."""
        self.load_checkpoint(path)
        return self


def train_dreamer(trajectories: Optional[Sequence[Trajectory]] = None, observation_shape: Optional[ObservationShape] = None,
                  num_steps: int = 1000, env_factory: Union[EnvFactory, str, None] = None, config: Optional[Config] = None,
                  seed: Optional[int] = None, device: Optional[str] = None, logger: Optional[RunLogger] = None,
                  show_progress: bool = False, checkpoint_dir: Union[str, os.PathLike, None] = None,
                  resume: Union[str, os.PathLike, None] = None, eval_episodes: Optional[int] = None) -> DreamerTrainer:
    """Train Dreamer and return the :class:`DreamerTrainer` (its ``.agent`` acts).

    * offline: ``trajectories`` (+ ``observation_shape``), ``num_steps`` gradient updates;
      actions are scaled to ``[-1, 1]`` with the recorded min/max per dimension.
    * online: ``env_factory`` (a factory or a Gymnasium id, ``pixels:<id>`` for images),
      ``num_steps`` environment steps; ``trajectories``, if given, seed the replay.
    """
    cfg = config or Config()
    if seed is not None:
        cfg = cfg.replace(training={"seed": seed})
    set_seed(cfg.training.seed, cfg.training.torch_threads)
    trajectories = list(trajectories) if trajectories is not None else None
    env_factory = make_env_factory(env_factory) if env_factory is not None else None
    if env_factory is not None:
        probe = env_factory()
        try:
            low, high = action_limits(probe)
            shape = tuple(probe.observation_space.shape) if probe.observation_space.shape else None
            if shape is None:
                shape = {k: tuple(s.shape) for k, s in probe.observation_space.spaces.items()}
        finally:
            probe.close()
        observation_shape = observation_shape or shape
        action_dim = len(low)
    elif trajectories:
        if observation_shape is None:
            observation_shape = trajectories[0].observation_shape
        low, high = action_bounds(trajectories)
        action_dim = trajectories[0].action_dim
    else:
        raise ValueError("train_dreamer needs trajectories (offline) or an env_factory (online)")
    trainer = DreamerTrainer(observation_shape, action_dim, cfg, device, low, high, env_factory, logger)
    if resume:
        trainer.load_checkpoint(resume)
    trainer.learn(num_steps, trajectories, show_progress, checkpoint_every=cfg.training.checkpoint_every
                  if checkpoint_dir else 0, checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                  eval_episodes=eval_episodes)
    return trainer


def run_cli(cfg: Config, trajectories: Optional[Sequence[Trajectory]] = None,
            resume: Union[bool, str, os.PathLike, None] = False) -> Dict[str, Any]:
    """``train --mode dreamer``: offline on ``trajectories`` when given, else online on
    ``training.env`` (``pixels:<id>`` for images). ``resume``: a checkpoint, or True for the
    run's newest. Checkpoints go to ``<checkpoint_dir>/reinforcement_learning/checkpoints/dreamer/``;
    ``cfg`` is the run's whole configuration (the options applied).

    Returns ``{"checkpoint", "eval_return" (online) or "world_model_loss" (offline), "env_steps",
    "updates", "log_dir"}``.
    """
    env = cfg.training.env
    directory = checkpoint_directory(cfg.training.checkpoint_dir, "dreamer", ALGORITHM)
    resume = distributed.from_main(resolve_resume(resume, directory, "dreamer"))
    log_dir = Path(cfg.training.log_dir) / run_name(env, ALGORITHM, cfg.training.seed)
    steps = cfg.training.total_timesteps
    with RunLogger(log_dir, enabled=cfg.training.tensorboard) as logger:
        if trajectories is not None:
            trainer = train_dreamer(list(trajectories), num_steps=steps or cfg.dreamer.offline_updates, config=cfg,
                                    logger=logger, show_progress=cfg.training.progress_bar, checkpoint_dir=directory,
                                    resume=resume)
            loss = trainer_loss(trainer)
            result = {"world_model_loss": loss, "metric": f"world model loss {loss:.4g}"}
        else:
            trainer = train_dreamer(env_factory=env, num_steps=steps or 100_000, config=cfg, logger=logger,
                                    show_progress=cfg.training.progress_bar, checkpoint_dir=directory, resume=resume)
            eval_return = trainer.evaluate(cfg.training.eval_episodes)
            logger.scalar("charts/eval_return", eval_return, trainer.env_steps)
            result = {"eval_return": eval_return, "metric": f"eval return {eval_return:.1f}"}
        log_imagined_frames(trainer, logger)
        path = trainer.save_checkpoint(directory / "dreamer_final.pt")
    log.info("dreamer: %d env steps, %d updates, saved %s", trainer.env_steps, trainer.updates, path)
    result.update(checkpoint=str(path), env_steps=trainer.env_steps, updates=trainer.updates, log_dir=str(log_dir))
    return result


def passed_multiple(before: int, after: int, every: int) -> bool:
    """Whether a count moving from ``before`` to ``after`` reached a multiple of ``every``
    (``every`` <= 0: never)."""
    return every > 0 and after // every > before // every


@torch.no_grad()
def trainer_loss(trainer: DreamerTrainer) -> float:
    with autocast(trainer.device, trainer.config.world_model.precision):
        total, _, _, _ = trainer.agent.world_model.loss(to_torch(trainer.sample(), trainer.device))
    return float(total)


def log_imagined_frames(trainer: DreamerTrainer, logger: RunLogger) -> None:
    """TensorBoard strip of real (top) vs. open-loop imagined (bottom) frames, image tasks only."""
    from robot_training.networks.encoders import split_observation_shape

    images, _ = split_observation_shape(trainer.agent.observation_shape)
    if not images or trainer.replay is None or trainer.replay.max_sequence_length < 16:
        return
    batch = trainer.replay.sample(1, 16, np.random.default_rng(0))
    context = 5
    with autocast(trainer.device, trainer.config.world_model.precision):
        pred = trainer.agent.world_model.open_loop(to_torch(batch, trainer.device), context)
    key = next(iter(images))
    real = batch["observation"][key] if isinstance(batch["observation"], dict) else batch["observation"]
    fake = pred["observation"][key] if isinstance(pred["observation"], dict) else pred["observation"]
    frames = np.concatenate([real[0, context:], fake[0, context:].cpu().numpy()], axis=1)  # (T, 2H, W, C)
    logger.images("dreamer/open_loop_real_top_imagined_bottom", np.concatenate(list(frames), axis=1)[None],
                  trainer.updates)
