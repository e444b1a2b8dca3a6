"""Train an RSSM world model on recorded trajectories (the seed's ``train_world_model``).

::

    from robot_training.world_models.train_world_model import train_world_model

    trainer = train_world_model(trajectories=trajectory_list, observation_shape=(64, 64, 3),
                                num_epochs=100)
    trainer.validation_loss()                       # mean loss on held-out episodes
    pred = trainer.open_loop_prediction(obs, actions, context=5)
    trainer.save_checkpoint("world_model.pt"); trainer.load_checkpoint("world_model.pt")

One *epoch* is as many updates of ``batch_size × sequence_length`` steps as the training
episodes hold steps (at least one). ``world_model.validation_fraction`` of the episodes (at
least one when there are two or more) is held out for :meth:`WorldModelTrainer.validation_loss`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from robot_training.checkpoint import (CheckpointError, checkpoint_directory, load_checkpoint, rng_state,
                                       save_checkpoint, set_rng_state)
from robot_training.config import Config, config_from_dict, resolve_device
from robot_training.data.trajectory import Trajectory, common_interface_fingerprint
from robot_training.networks.encoders import ObservationShape, ObservationShapeError, split_observation_shape
from robot_training.utils import distributed
from robot_training.utils.logging import RunLogger, progress, run_name
from robot_training.utils.optim import adam
from robot_training.utils.precision import autocast as _autocast
from robot_training.utils.seeding import set_seed
from robot_training.utils.stopping import save_on_stop
from robot_training.world_models.presets import resolve_size
from robot_training.world_models.replay import (SequenceReplay, action_bounds, normalize_action,
                                                replay_from_trajectories, to_torch)
from robot_training.world_models.world_model import WorldModel

log = logging.getLogger("robot_training.world_models")

CHECKPOINT_KIND = "world_model"
ALGORITHM = "rssm"


def autocast(device: str, precision: str):
    """The world model's compute precision (``world_model.precision``)."""
    return _autocast(device, precision, key="world_model.precision")


def check_observation_shape(observation_shape: ObservationShape, trajectories: Sequence[Trajectory]) -> None:
    """Raise :class:`ObservationShapeError` unless every trajectory has ``observation_shape``."""
    split_observation_shape(observation_shape)
    want = ({k: tuple(v) for k, v in observation_shape.items()} if isinstance(observation_shape, Mapping)
            else tuple(observation_shape))
    for trajectory in trajectories:
        if trajectory.observation_shape != want:
            raise ObservationShapeError(
                f"trajectory {trajectory.episode_id!r} has observations of shape "
                f"{trajectory.observation_shape}, but observation_shape={want}")


def shape_to_plain(observation_shape: ObservationShape):
    if isinstance(observation_shape, Mapping):
        return {k: [int(s) for s in v] for k, v in observation_shape.items()}
    return [int(s) for s in observation_shape]


def shape_from_plain(value) -> ObservationShape:
    if isinstance(value, Mapping):
        return {k: tuple(v) for k, v in value.items()}
    return tuple(value)


class ModelSpec:
    """What a world model is built for, kept alike by :class:`WorldModelTrainer` and the Dreamer
    agent: ``config`` (its sizes resolved, :func:`resolve_size`), ``device``, ``observation_shape``,
    ``action_dim`` and the action bounds (None: not known yet). :meth:`spec_state` is their part
    of a checkpoint's state; :meth:`check_spec` refuses checkpoint data made for others."""

    def __init__(self, observation_shape: ObservationShape, action_dim: int, config: Optional[Config] = None,
                 device: Optional[str] = None, action_low=None, action_high=None):
        self.config = resolve_size(config or Config())
        self.device = resolve_device(device or self.config.training.device)
        self.observation_shape = shape_from_plain(observation_shape)
        self.action_dim = int(action_dim)
        self.action_low = None if action_low is None else np.asarray(action_low, np.float32)
        self.action_high = None if action_high is None else np.asarray(action_high, np.float32)

    def spec_state(self) -> Dict[str, Any]:
        return {
            "observation_shape": shape_to_plain(self.observation_shape),
            "action_dim": self.action_dim,
            "action_low": None if self.action_low is None else torch.as_tensor(self.action_low),
            "action_high": None if self.action_high is None else torch.as_tensor(self.action_high),
        }

    def check_spec(self, data: Mapping[str, Any], source: str, what: str, this: str) -> None:
        """Raise :class:`CheckpointError` unless ``data`` (a checkpoint's state) has this
        observation shape and action dimension; the message names ``what`` it holds and ``this``."""
        shape = shape_from_plain(data["observation_shape"])
        if shape != self.observation_shape or int(data["action_dim"]) != self.action_dim:
            raise CheckpointError(f"{source}: {what} for observations {shape} and {data['action_dim']} actions; "
                                  f"this {this} has {self.observation_shape} and {self.action_dim}")


class WorldModelTrainer(ModelSpec):
    """A :class:`WorldModel`, its optimiser and the data it trains on; the learner surface
    (:class:`robot_training.learner.Learner`): ``learn`` (data, then epochs of updates),
    ``train_step``, ``predict`` (open-loop prediction), ``save`` / ``load``."""

    def __init__(self, observation_shape: ObservationShape, action_dim: int, config: Optional[Config] = None,
                 device: Optional[str] = None, action_low=None, action_high=None):
        super().__init__(observation_shape, action_dim, config, device, action_low, action_high)
        self.interface_fingerprint: Optional[str] = None
        """The interface description of the training data (bags), kept in checkpoints."""
        wm = self.config.world_model
        self.model = WorldModel(self.observation_shape, self.action_dim, self.config).to(self.device)
        self.optimizer = adam(self.model.parameters(), lr=wm.learning_rate, eps=1e-8)
        self.updates = 0
        self.train_replay: Optional[SequenceReplay] = None
        self.validation_replay: Optional[SequenceReplay] = None
        self.rng = np.random.default_rng(self.config.training.seed)
        self._loss = None  # model.loss, through DDP under torchrun (made at the first update)

    # ------------------------------------------------------------------ training
    def autocast(self):
        return autocast(self.device, self.config.world_model.precision)

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """One gradient update on a NumPy or tensor batch (under torchrun: this rank's rows of the
        global batch, see :meth:`sample`); returns scalar metrics."""
        batch = to_torch(batch, self.device)
        self.model.train()
        if self._loss is None:
            if distributed.active():
                distributed.local_batch_size(self.config.world_model.batch_size, "world_model.batch_size")
            self._loss = distributed.parallel(self.model, "loss")
        with self.autocast(), distributed.batch_shard():
            total, losses, _, metrics = self._loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.world_model.grad_clip)
        self.optimizer.step()
        self.updates += 1
        out = {f"world_model/{k}_loss": float(v.detach().float().mean()) for k, v in losses.items()}
        out.update({f"world_model/{k}": float(v) for k, v in metrics.items()})
        out["world_model/loss"] = float(total.detach())
        out["world_model/grad_norm"] = float(grad_norm)
        return out

    def set_data(self, trajectories: Sequence[Trajectory], validation_fraction: Optional[float] = None) -> None:
        """Split episodes into training and validation replays (actions scaled to [-1, 1])."""
        trajectories = list(trajectories)
        if not trajectories:
            raise ValueError("train_world_model needs at least one trajectory")
        check_observation_shape(self.observation_shape, trajectories)
        self.interface_fingerprint = common_interface_fingerprint(trajectories)
        for t in trajectories:
            if t.action_dim != self.action_dim:
                raise ValueError(f"trajectory {t.episode_id!r} has action_dim {t.action_dim}, "
                                 f"the model expects {self.action_dim}")
        if self.action_low is None:
            self.action_low, self.action_high = action_bounds(trajectories)
        fraction = self.config.world_model.validation_fraction if validation_fraction is None else validation_fraction
        order = np.random.default_rng(self.config.training.seed).permutation(len(trajectories))
        num_val = min(len(trajectories) - 1, max(1, round(fraction * len(trajectories)))) if fraction > 0 else 0
        val = [trajectories[i] for i in order[:num_val]]
        train = [trajectories[i] for i in order[num_val:]]
        self.train_replay = replay_from_trajectories(train, self.action_low, self.action_high)
        self.validation_replay = replay_from_trajectories(val, self.action_low, self.action_high) if val else None

    def sequence_length(self, replay: SequenceReplay) -> int:
        return min(self.config.world_model.sequence_length, len(replay))

    def sample(self, replay: SequenceReplay, rng: Optional[np.random.Generator] = None,
               rows: Optional[slice] = None) -> Dict[str, Any]:
        """A global batch (``rows``: the rows of it this rank trains on)."""
        return replay.sample(self.config.world_model.batch_size, self.sequence_length(replay), rng or self.rng, rows)

    def updates_per_epoch(self) -> int:
        wm = self.config.world_model
        return max(1, len(self.train_replay) // (wm.batch_size * self.sequence_length(self.train_replay)))

    @torch.no_grad()
    def validation_loss(self, num_batches: int = 4, seed: int = 12345) -> float:
        """Mean world-model loss on held-out episodes (training episodes if none were held out).

        Uses fixed seeds (batches and latent samples) so successive calls are comparable.
        """
        replay = self.validation_replay or self.train_replay
        if replay is None:
            raise RuntimeError("no data: call set_data() (or train_world_model) first")
        rng = np.random.default_rng(seed)
        self.model.eval()
        values = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(num_batches):
                with self.autocast():
                    total, _, _, _ = self.model.loss(to_torch(self.sample(replay, rng), self.device))
                values.append(float(total))
        return float(np.mean(values))

    def fit(self, num_updates: int, logger: Optional[RunLogger] = None, show_progress: bool = False,
            log_every: int = 50, checkpoint_every: int = 0, checkpoint_dir: Optional[Path] = None) -> Dict[str, float]:
        """Run ``num_updates`` gradient updates on the training replay."""
        metrics: Dict[str, float] = {}
        bar = progress(num_updates, "world model", enabled=show_progress, unit="update")
        try:
            with save_on_stop(lambda: self._save_at_stop(checkpoint_dir)):
                for _ in range(num_updates):
                    rows = distributed.batch_rows(self.config.world_model.batch_size)
                    metrics = self.train_step(self.sample(self.train_replay, rows=rows))
                    bar.update(1)
                    if logger is not None and self.updates % log_every == 0:
                        logger.scalars(metrics, self.updates)
                    if checkpoint_every and checkpoint_dir and self.updates % checkpoint_every == 0:
                        self.save_checkpoint(Path(checkpoint_dir) / f"world_model_{self.updates}.pt")
        finally:
            bar.close()
        return metrics

    def learn(self, trajectories: Optional[Sequence[Trajectory]] = None, num_epochs: Optional[int] = None,
              logger: Optional[RunLogger] = None, show_progress: bool = False,
              checkpoint_every: int = 0, checkpoint_dir: Optional[Path] = None) -> Dict[str, float]:
        """Train on ``trajectories`` (:meth:`set_data`; None: the data set before) until
        ``num_epochs`` (``world_model.num_epochs``) epochs of updates are done; a loaded trainer
        continues its count. Returns the last update's metrics."""
        if trajectories is not None:
            self.set_data(trajectories)
        if self.train_replay is None:
            raise RuntimeError("no data: pass trajectories (or call set_data() first)")
        epochs = self.config.world_model.num_epochs if num_epochs is None else int(num_epochs)
        remaining = max(0, epochs * self.updates_per_epoch() - self.updates)
        return self.fit(remaining, logger=logger, show_progress=show_progress,
                        checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir)

    def _save_at_stop(self, checkpoint_dir: Optional[Path]):
        """A stop between two updates: the state is whole; ``--resume`` continues from it."""
        if checkpoint_dir is None:
            return None, self.updates
        return self.save_checkpoint(Path(checkpoint_dir) / f"world_model_{self.updates}.pt"), self.updates

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def open_loop_prediction(self, observations, actions: np.ndarray, context: int) -> Dict[str, np.ndarray]:
        """Observe ``context`` steps, then imagine the rest under the given actions.

        ``observations`` ``(B, T, ...)`` (or dict) and ``actions`` ``(B, T, A)`` follow the
        trajectory convention (``actions[:, t]`` taken at ``observations[:, t]``; raw units).
        Returns NumPy ``observation`` / ``reward`` / ``continue`` predictions for the steps
        ``context .. T-1`` (``reward[:, i]`` predicts the reward of the action before that step).
        """
        actions = np.asarray(actions, np.float32)
        if actions.ndim == 2:  # a single sequence
            actions = actions[None]
            observations = ({k: np.asarray(v)[None] for k, v in observations.items()}
                            if isinstance(observations, Mapping) else np.asarray(observations)[None])
        if self.action_low is not None:
            actions = normalize_action(actions, self.action_low, self.action_high)
        batch_size, length = actions.shape[:2]
        previous = np.concatenate([np.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
        is_first = np.zeros((batch_size, length), bool)
        is_first[:, 0] = True
        batch = to_torch({"observation": observations, "action": previous, "is_first": is_first}, self.device)
        self.model.eval()
        with self.autocast():
            pred = self.model.open_loop(batch, context)

        def tail(value):
            if isinstance(value, dict):
                return {k: tail(v) for k, v in value.items()}
            return value[:, context:].float().cpu().numpy() if value.dtype != torch.uint8 else value[:, context:].cpu().numpy()

        return {k: tail(v) for k, v in pred.items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.spec_state(),
            "updates": self.updates,
            "rng": rng_state(self.rng),
        }

    def save_checkpoint(self, path: Union[str, os.PathLike]) -> Path:
        return save_checkpoint(path, CHECKPOINT_KIND, self.state_dict(), config=self.config.to_dict(),
                               interface_fingerprint=self.interface_fingerprint)

    def load_checkpoint(self, path: Union[str, os.PathLike]) -> None:
        data = load_checkpoint(path, kind=CHECKPOINT_KIND)
        self.check_spec(data, str(path), "world model", "trainer")
        try:
            self.model.load_state_dict(data["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit this model's sizes ({exc})") from None
        self.optimizer.load_state_dict(data["optimizer"])
        self.updates = int(data["updates"])
        self.interface_fingerprint = data.get("interface_fingerprint")
        if data.get("action_low") is not None:
            self.action_low = data["action_low"].numpy()
            self.action_high = data["action_high"].numpy()
        set_rng_state(data["rng"], self.rng)

    def predict(self, observations, actions: np.ndarray, context: int) -> Dict[str, np.ndarray]:
        """The learner surface's name for :meth:`open_loop_prediction`."""
        return self.open_loop_prediction(observations, actions, context)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """:meth:`save_checkpoint`."""
        return self.save_checkpoint(path)

    def load(self, path: Union[str, os.PathLike]) -> "WorldModelTrainer":
        """:meth:`load_checkpoint`; returns the trainer."""
        self.load_checkpoint(path)
        return self

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], device: Optional[str] = None) -> "WorldModelTrainer":
        data = load_checkpoint(path, kind=CHECKPOINT_KIND)
        cfg = config_from_dict(data["config"], source=str(path))
        trainer = cls(shape_from_plain(data["observation_shape"]), data["action_dim"], cfg, device or "cpu")
        trainer.load_checkpoint(path)
        return trainer


def train_world_model(trajectories: Sequence[Trajectory], observation_shape: ObservationShape,
                      num_epochs: int = 100, config: Optional[Config] = None, device: Optional[str] = None,
                      seed: Optional[int] = None, logger: Optional[RunLogger] = None,
                      show_progress: bool = False, checkpoint_dir: Union[str, os.PathLike, None] = None,
                      resume: Union[str, os.PathLike, None] = None) -> WorldModelTrainer:
    """Train a world model for ``num_epochs`` epochs and return the :class:`WorldModelTrainer`."""
    trajectories = list(trajectories)
    cfg = config or Config()
    if seed is not None:
        cfg = cfg.replace(training={"seed": seed})
    set_seed(cfg.training.seed, cfg.training.torch_threads)
    check_observation_shape(observation_shape, trajectories)
    trainer = WorldModelTrainer(observation_shape, trajectories[0].action_dim, cfg, device)
    if resume:
        trainer.load_checkpoint(resume)
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
    trainer.learn(trajectories, num_epochs, logger=logger, show_progress=show_progress,
                  checkpoint_every=cfg.training.checkpoint_every if checkpoint_dir else 0,
                  checkpoint_dir=checkpoint_dir)
    return trainer


# ---------------------------------------------------------------------- command line


def resolve_resume(resume, directory: Path, prefix: str) -> Optional[Path]:
    """``--resume``: a checkpoint path, or true/``latest`` for the newest file in ``directory``."""
    if not resume:
        return None
    if isinstance(resume, (str, os.PathLike)) and str(resume).lower() not in ("true", "latest", "auto", "1"):
        return Path(resume)
    files = sorted(directory.glob(f"{prefix}_*.pt"), key=lambda p: p.stat().st_mtime_ns) if directory.is_dir() else []
    if not files:
        raise CheckpointError(f"{directory}: no {prefix}_*.pt checkpoint to resume from")
    return files[-1]


def run_cli(cfg: Config, trajectories: Optional[Sequence[Trajectory]] = None,
            resume: Union[bool, str, os.PathLike, None] = False) -> Dict[str, Any]:
    """``train --mode world_model``: train on ``trajectories`` (None: random-action episodes of
    ``training.env``, ``training.total_timesteps`` steps or 10 000), checkpoint under the
    seed's layout, log. ``resume``: a checkpoint, or True for the run's newest
    (:func:`resolve_resume`). ``cfg`` is the run's whole configuration (the options applied).

    Returns ``{"checkpoint": path, "validation_loss": float, "updates": int, "log_dir": str}``.
    """
    if trajectories is None:
        from robot_training.envs.factories import collect_random_trajectories, make_env_factory

        trajectories = collect_random_trajectories(make_env_factory(cfg.training.env),
                                                   cfg.training.total_timesteps or 10_000, seed=cfg.training.seed)
    trajectories = list(trajectories)
    directory = checkpoint_directory(cfg.training.checkpoint_dir, "world_model", ALGORITHM)
    resume = distributed.from_main(resolve_resume(resume, directory, "world_model"))
    log_dir = Path(cfg.training.log_dir) / run_name(cfg.training.env, "world_model", cfg.training.seed)
    shape = trajectories[0].observation_shape
    with RunLogger(log_dir, enabled=cfg.training.tensorboard) as logger:
        # train_world_model seeds the run (set_seed), once
        trainer = train_world_model(trajectories, shape, num_epochs=cfg.world_model.num_epochs, config=cfg,
                                    logger=logger, show_progress=cfg.training.progress_bar,
                                    checkpoint_dir=directory, resume=resume)
        validation = trainer.validation_loss()
        logger.scalar("world_model/validation_loss", validation, trainer.updates)
        log_open_loop_images(trainer, logger)
        path = trainer.save_checkpoint(directory / "world_model_final.pt")
    log.info("world model: %d updates, validation loss %.4f, saved %s", trainer.updates, validation, path)
    return {"checkpoint": str(path), "validation_loss": validation, "updates": trainer.updates,
            "log_dir": str(log_dir), "metric": f"validation loss {validation:.4g}"}


def log_open_loop_images(trainer: WorldModelTrainer, logger: RunLogger, count: int = 4, step: Optional[int] = None) -> None:
    """For image observations: real (top) vs. imagined (bottom) frames of one open-loop rollout."""
    replay = trainer.validation_replay or trainer.train_replay
    images, _ = split_observation_shape(trainer.observation_shape)
    if not images or replay is None or len(replay) < 4:
        return
    length = min(len(replay), 16)
    batch = replay.sample(count, length, np.random.default_rng(0))
    context = max(1, length // 3)
    with torch.no_grad(), trainer.autocast():
        pred = trainer.model.open_loop(to_torch(batch, trainer.device), context)
    key = next(iter(images))
    real = batch["observation"][key] if isinstance(batch["observation"], dict) else batch["observation"]
    fake = pred["observation"][key] if isinstance(pred["observation"], dict) else pred["observation"]
    fake = fake.cpu().numpy()
    frames = np.concatenate([real[:, context:], fake[:, context:]], axis=2)  # real above imagined
    strip = np.concatenate(list(frames[0]), axis=1)  # (2H, (T - context) W, C)
    logger.images("world_model/open_loop_real_top_imagined_bottom", strip[None],
                  trainer.updates if step is None else step)
