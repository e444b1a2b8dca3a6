"""The seed's policy-training entry points: :func:`train_policy` and :class:`PolicyTrainer`.

::

    from robot_training.policies.train_policy import PolicyTrainer, train_policy

    trainer = train_policy(env_factory=make_env, algorithm="ppo", num_iterations=100)
    trainer.save("policy.pt")

    trainer = PolicyTrainer("ppo")
    trainer.load("policies/checkpoints/ppo/policy_ppo_final.pt")
    action = trainer.predict(observation)          # NumPy in, NumPy out

The env-step budget is ``total_timesteps`` when given, else ``num_iterations *
training.steps_per_iteration``. Checkpoints follow the seed's layout
``<checkpoint_dir>/policies/checkpoints/<algorithm>/policy_<algorithm>_{step<N>,final}.pt``;
the SAC replay buffer goes to ``<same name>.replay.npz`` beside each checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Type, Union

import numpy as np
import torch

from robot_training.checkpoint import CheckpointError, checkpoint_directory, load_checkpoint
from robot_training.algorithms import get, resolve
from robot_training.config import Config, config_from_dict, resolve_device
from robot_training.envs.make import EnvSpec, make_env
from robot_training.policies.common import Checkpointer, latest_checkpoint, replay_path  # noqa: F401 (re-export)
from robot_training.utils.logging import RunLogger, run_name
from robot_training.utils.seeding import set_seed

def _algorithm_class(name: str) -> Type:
    """The learner class of a ``policy``-family algorithm (:mod:`robot_training.algorithms`)."""
    return resolve(get(name, family="policy").learner)


class PolicyTrainer:
    """SB3-like surface over one algorithm: ``learn``, ``predict``, ``save``, ``load``, ``train_step``
    (the :class:`robot_training.learner.Learner` surface; the learner underneath has it too)."""

    def __init__(self, algorithm: str = "ppo", env_factory: Optional[EnvSpec] = None,
                 config: Optional[Config] = None, seed: Optional[int] = None, device: Optional[str] = None,
                 checkpoint_dir: Union[str, os.PathLike, None] = None, log_dir: Union[str, os.PathLike, None] = None,
                 progress_bar: Optional[bool] = None, env_name: Optional[str] = None):
        self.algorithm_name = algorithm
        self.algorithm_class = _algorithm_class(algorithm)
        self.config = config or Config()
        t = self.config.training
        self.env_factory = env_factory
        self.seed = t.seed if seed is None else int(seed)
        self.device = resolve_device(device or t.device)
        root = t.checkpoint_dir if checkpoint_dir is None else checkpoint_dir
        self.checkpoint_dir = checkpoint_directory(root, "policy", algorithm)
        self.progress_bar = t.progress_bar if progress_bar is None else progress_bar
        self.env_name = env_name or (env_factory if isinstance(env_factory, str) else "env")
        self._log_dir = log_dir
        self.logger: Optional[RunLogger] = None
        self.algo = None  # PPO or SAC, built by learn() or load()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        if self.env_factory is None:
            raise ValueError("PolicyTrainer needs env_factory to train (a Gymnasium id or a callable)")
        env = make_env(self.env_factory)
        try:
            obs_space, act_space = env.observation_space, env.action_space
        finally:
            env.close()
        self.algo = self.algorithm_class(obs_space, act_space, config=self.config, env=self.env_factory,
                                         seed=self.seed, device=self.device, logger=self._ensure_logger())

    def _ensure_logger(self) -> Optional[RunLogger]:
        t = self.config.training
        if self.logger is None and t.tensorboard:
            log_dir = self._log_dir or Path(t.log_dir) / run_name(str(self.env_name), self.algorithm_name, self.seed)
            self.logger = RunLogger(log_dir)
        return self.logger

    @property
    def num_timesteps(self) -> int:
        return 0 if self.algo is None else self.algo.num_timesteps

    # ------------------------------------------------------------------ public surface
    def learn(self, total_timesteps: int, checkpoint_every: Optional[int] = None) -> "PolicyTrainer":
        """Train until the step counter reaches ``total_timesteps``; checkpoints every
        ``checkpoint_every`` env steps (``training.checkpoint_every``; 0 = none) and at the end."""
        if self.config.training.torch_threads > 0:
            torch.set_num_threads(self.config.training.torch_threads)
        if self.algo is None:
            set_seed(self.seed)  # a resumed algorithm keeps the RNG states it restored
            self._build()
        else:
            self.algo.env_spec = self.algo.env_spec or self.env_factory
            self.algo.logger = self._ensure_logger()
        every = self.config.training.checkpoint_every if checkpoint_every is None else checkpoint_every
        self.checkpointer = Checkpointer(self.checkpoint_dir, f"policy_{self.algorithm_name}", every, self.save)
        self.algo.learn(total_timesteps, callback=lambda algo: self.checkpointer.maybe_save(algo.num_timesteps)
                        and None, progress_bar=self.progress_bar)
        self.final_checkpoint = self.checkpointer.save_final()
        if self.logger is not None:
            self.logger.flush()
        return self

    def predict(self, observation, deterministic: bool = True) -> np.ndarray:
        if self.algo is None:
            raise RuntimeError("PolicyTrainer.predict: no policy yet (call learn() or load() first)")
        return self.algo.predict(observation, deterministic=deterministic)

    def train_step(self, batch):
        """One update of the learner on ``batch`` (its own kind: a PPO rollout, a SAC replay batch)."""
        if self.algo is None:
            raise RuntimeError("PolicyTrainer.train_step: no learner yet (call learn() or load() first)")
        return self.algo.train_step(batch)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        if self.algo is None:
            raise RuntimeError("PolicyTrainer.save: nothing to save (call learn() or load() first)")
        # the learner's checkpoint (and its replay file) under this trainer's algorithm name
        return self.algo.save(path, kind=self.algorithm_name,
                              env=self.env_name if isinstance(self.env_name, str) else None)

    def load(self, path: Union[str, os.PathLike], load_replay: bool = True) -> "PolicyTrainer":
        """Restore a checkpoint written by :meth:`save` (weights, optimisers, counters, RNG,
        and the SAC replay buffer when its file is beside the checkpoint)."""
        data = load_checkpoint(path, kind=self.algorithm_name)
        if data.get("config") is not None:
            self.config = config_from_dict(data["config"], source=str(path))
        if self.env_factory is None and data.get("env") and data["env"] != "env":
            self.env_name = data["env"]
        try:
            self.algo = self.algorithm_class.from_state(data, self.config, env=self.env_factory,
                                                        device=self.device, logger=None)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not fit a {self.algorithm_name} policy ({exc})") from None
        if load_replay:
            self.algo.load_side_files(Path(path))
        self.seed = self.algo.seed
        return self

    def resume(self, path: Union[str, os.PathLike, None] = None) -> Path:
        """Load ``path``, or the newest checkpoint in this trainer's checkpoint directory."""
        if path is None:
            path = latest_checkpoint(self.checkpoint_dir, f"policy_{self.algorithm_name}")
            if path is None:
                raise CheckpointError(f"{self.checkpoint_dir}: no checkpoint to resume from")
        self.load(path)
        return Path(path)

    def close(self) -> None:
        if self.algo is not None:
            self.algo.close()
        if self.logger is not None:
            self.logger.close()
            self.logger = None


def train_policy(env_factory: EnvSpec, algorithm: str = "ppo", num_iterations: Optional[int] = None,
                 total_timesteps: Optional[int] = None, config: Optional[Config] = None,
                 seed: Optional[int] = None, device: Optional[str] = None,
                 checkpoint_dir: Union[str, os.PathLike, None] = None, progress_bar: Optional[bool] = None,
                 resume: Union[bool, str, os.PathLike] = False, log_dir=None) -> PolicyTrainer:
    """Train a PPO or SAC policy on ``env_factory`` (a Gymnasium id or a callable) and return
    the :class:`PolicyTrainer`. Budget: ``total_timesteps`` env steps, else
    ``num_iterations * training.steps_per_iteration`` (``num_iterations`` defaults to
    ``training.num_iterations``; ``training.total_timesteps`` wins over both when set)."""
    config = config or Config()
    budget = resolve_budget(config, num_iterations, total_timesteps)
    trainer = PolicyTrainer(algorithm, env_factory, config=config, seed=seed, device=device,
                            checkpoint_dir=checkpoint_dir, progress_bar=progress_bar, log_dir=log_dir)
    if resume:
        trainer.resume(None if resume is True else resume)
    trainer.learn(budget)
    return trainer


def resolve_budget(config: Config, num_iterations: Optional[int] = None, total_timesteps: Optional[int] = None) -> int:
    t = config.training
    if total_timesteps is not None:
        return int(total_timesteps)
    if num_iterations is not None:
        return int(num_iterations) * t.steps_per_iteration
    if t.total_timesteps is not None:
        return int(t.total_timesteps)
    return t.num_iterations * t.steps_per_iteration
