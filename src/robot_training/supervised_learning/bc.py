"""Behavioral cloning: regress expert actions from observations.

An MLP (or, with ``use_sequences``, an LSTM over windows of each episode) predicts the
action; the loss is the MSE on standardised actions or a Gaussian negative log-likelihood
(``bc.loss: gaussian``). Episodes are split into training and validation sets
(``bc.validation_fraction``); the weights with the lowest validation loss are kept.
Observation and action statistics of the training data are buffers of the network, so a
checkpoint is self-contained.

Recurrent state is explicit: ``step(obs, state) -> (action, state)`` with
``initial_state(batch)``; ``predict`` on its own starts from a zero state every call.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from robot_training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from robot_training.config import BCConfig, Config, config_from_dict
from robot_training.data.trajectory import Trajectory, common_interface_fingerprint
from robot_training.networks.distributions import gaussian_log_prob
from robot_training.networks.mlp import mlp
from robot_training.policies.common import as_batch
from robot_training.utils import distributed
from robot_training.utils.logging import RunLogger, progress
from robot_training.utils.optim import adam

LOSSES = ("mse", "gaussian")
NOISE_SEED_OFFSET = 104_729  # the observation-noise generator's seed, apart from the permutation's


def flat_observations(traj: Trajectory) -> np.ndarray:
    """``(T, obs_dim)`` float32: vector observations, or a dict's vector streams concatenated
    in sorted key order."""
    obs = traj.observations
    if isinstance(obs, dict):
        parts = [np.asarray(obs[k], dtype=np.float32).reshape(len(traj), -1) for k in sorted(obs)]
        return np.concatenate(parts, axis=1)
    if obs.ndim != 2:
        raise ValueError(f"behavioral cloning needs vector observations; episode {traj.episode_id!r} has "
                         f"observations of shape {obs.shape[1:]}")
    return obs.astype(np.float32, copy=False)


class BCNetwork(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, cfg: BCConfig, use_sequences: bool):
        super().__init__()
        self.use_sequences = use_sequences
        self.gaussian = cfg.loss == "gaussian"
        out = 2 * action_dim if self.gaussian else action_dim
        for name, dim in (("obs_mean", obs_dim), ("obs_std", obs_dim), ("act_mean", action_dim), ("act_std", action_dim)):
            self.register_buffer(name, torch.zeros(dim) if "mean" in name else torch.ones(dim))
        if use_sequences:
            self.lstm = nn.LSTM(obs_dim, cfg.lstm_hidden, batch_first=True)
            self.head = mlp(cfg.lstm_hidden, out, cfg.hidden_dim, max(cfg.num_layers - 1, 0))
        else:
            self.head = mlp(obs_dim, out, cfg.hidden_dim, cfg.num_layers)

    def forward(self, obs: torch.Tensor, state=None):
        """Standardised-action mean and log-std (or None); ``obs`` is ``(B, D)`` or, with
        sequences, ``(B, T, D)``; returns the new LSTM state as third value."""
        x = (obs - self.obs_mean) / self.obs_std
        if self.use_sequences:
            x, state = self.lstm(x, state)
        out = self.head(x)
        if self.gaussian:
            mean, log_std = out.chunk(2, dim=-1)
            return mean, log_std.clamp(-5.0, 2.0), state
        return out, None, state

    def to_action(self, norm_action: torch.Tensor) -> torch.Tensor:
        return norm_action * self.act_std + self.act_mean


class Batch(NamedTuple):
    observations: torch.Tensor  # (B, D) or (B, T, D)
    actions: torch.Tensor       # (B, A) or (B, T, A), standardised
    mask: torch.Tensor          # (B,) or (B, T): 1 on real steps


class BehavioralCloning:
    """BC trainer with the learner surface ``learn``/``train_step``/``predict``/``save``/``load``."""

    algorithm = "bc"

    def __init__(self, config: Optional[Config] = None, use_sequences: Optional[bool] = None, seed: int = 0,
                 device: str = "cpu", logger: Optional[RunLogger] = None):
        self.config = config or Config()
        if use_sequences is not None and use_sequences != self.config.bc.use_sequences:
            self.config = self.config.replace(bc={"use_sequences": bool(use_sequences)})
        self.cfg: BCConfig = self.config.bc
        if self.cfg.loss not in LOSSES:
            raise ValueError(f"bc.loss: unknown loss {self.cfg.loss!r}; one of {', '.join(LOSSES)}")
        if not self.cfg.observation_noise >= 0:
            raise ValueError(f"bc.observation_noise: must be 0 or more, got {self.cfg.observation_noise!r}")
        self.seed, self.device, self.logger = int(seed), torch.device(device), logger
        self.model: Optional[BCNetwork] = None
        self.optimizer = None
        self._forward = None
        self.epoch = 0
        self.history: Dict[str, List[float]] = {"train_loss": [], "val_loss": []}
        self.best_val_loss = math.inf
        self.np_rng = np.random.default_rng(self.seed)
        self.interface_fingerprint: Optional[str] = None
        """The interface description of the demonstrations (bags), stored in checkpoints."""

    def _build(self, obs_dim: int, action_dim: int) -> None:
        self.model = BCNetwork(obs_dim, action_dim, self.cfg, self.cfg.use_sequences).to(self.device)
        self.optimizer = adam(self.model.parameters(), lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay)
        self._forward = None  # the model, through DDP under torchrun (made at the first update)

    # ------------------------------------------------------------------ data
    def split(self, trajectories: Sequence[Trajectory]) -> Tuple[List[Trajectory], List[Trajectory]]:
        """Whole episodes to validation (at least one when there are two or more episodes)."""
        n = len(trajectories)
        frac = self.cfg.validation_fraction
        if n >= 2 and frac > 0:
            n_val = min(n - 1, max(1, int(round(frac * n))))
            order = np.random.default_rng(self.seed).permutation(n)
            val = [trajectories[i] for i in sorted(order[:n_val])]
            train = [trajectories[i] for i in sorted(order[n_val:])]
            return train, val
        if n == 1 and frac > 0 and len(trajectories[0]) >= 10:  # one long episode: split in time
            t = trajectories[0]
            cut = int(len(t) * (1 - frac))
            return [t.slice(0, cut)], [t.slice(cut, len(t))]
        return list(trajectories), []

    def _tensors(self, trajs: Sequence[Trajectory]) -> Batch:
        m = self.model
        if not self.cfg.use_sequences:
            obs = np.concatenate([flat_observations(t) for t in trajs])
            act = np.concatenate([t.actions for t in trajs])
            o = torch.as_tensor(obs, device=self.device)
            a = (torch.as_tensor(act, device=self.device) - m.act_mean) / m.act_std
            return Batch(o, a, torch.ones(len(o), device=self.device))
        L = self.cfg.sequence_length
        windows_o, windows_a, masks = [], [], []
        for t in trajs:
            obs, act = flat_observations(t), t.actions
            for s in range(0, len(t), L):
                n = min(L, len(t) - s)
                o = np.zeros((L, obs.shape[1]), np.float32)
                a = np.zeros((L, act.shape[1]), np.float32)
                k = np.zeros(L, np.float32)
                o[:n], a[:n], k[:n] = obs[s:s + n], act[s:s + n], 1.0
                windows_o.append(o), windows_a.append(a), masks.append(k)
        o = torch.as_tensor(np.stack(windows_o), device=self.device)
        a = (torch.as_tensor(np.stack(windows_a), device=self.device) - m.act_mean) / m.act_std
        return Batch(o, a, torch.as_tensor(np.stack(masks), device=self.device))

    def _loss(self, b: Batch, forward=None, count: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean loss over the real steps of ``b``; with ``count`` (a rank's share of a global
        batch) the sum over its steps divided by ``count``, the global batch's steps / world size,
        so that DDP's mean of the ranks' gradients is the gradient of the global batch's mean."""
        mean, log_std, _ = (forward or self.model)(b.observations)
        if log_std is None:
            per_step = (mean - b.actions).pow(2).mean(-1)
        else:
            per_step = -gaussian_log_prob(b.actions, mean, log_std) / b.actions.shape[-1]
        if count is not None:
            return (per_step * b.mask).sum() / count
        return (per_step * b.mask).sum() / b.mask.sum().clamp(min=1.0)

    def _shard(self, data: Batch, idx: torch.Tensor) -> Tuple[Batch, torch.Tensor]:
        """Under torchrun: this rank's rows of the global batch ``idx`` (padding of weight 0)
        and the ``count`` :meth:`_loss` divides by."""
        mine, weight = distributed.shard(idx)
        b = Batch(*(x[mine] for x in data))
        b = b._replace(mask=b.mask * weight.view(-1, *[1] * (b.mask.dim() - 1)))
        return b, data.mask[idx].sum().clamp(min=1.0) / distributed.world_size()

    # ------------------------------------------------------------------ training
    def learn(self, demonstrations: Sequence[Trajectory], num_epochs: Optional[int] = None,
              progress_bar: bool = False) -> "BehavioralCloning":
        """Train until ``epoch`` reaches ``num_epochs`` (``bc.num_epochs``); a loaded trainer
        continues its count."""
        demos = list(demonstrations)
        if not demos:
            raise ValueError("behavioral cloning needs at least one demonstration")
        fingerprint = common_interface_fingerprint(demos)
        if self.model is not None and fingerprint != self.interface_fingerprint:
            raise ValueError(
                f"these demonstrations were computed through interface {str(fingerprint)[:12]}, the model "
                f"was trained through {str(self.interface_fingerprint)[:12]}: continue on data of one description")
        self.interface_fingerprint = fingerprint
        total = self.cfg.num_epochs if num_epochs is None else int(num_epochs)
        train, val = self.split(demos)
        if self.model is None:
            obs = np.concatenate([flat_observations(t) for t in train])
            act = np.concatenate([t.actions for t in train])
            self._build(obs.shape[1], act.shape[1])
            with torch.no_grad():
                self.model.obs_mean.copy_(torch.as_tensor(obs.mean(0)))
                self.model.obs_std.copy_(torch.as_tensor(obs.std(0) + 1e-6))
                self.model.act_mean.copy_(torch.as_tensor(act.mean(0)))
                self.model.act_std.copy_(torch.as_tensor(act.std(0) + 1e-6))
        train_b = self._tensors(train)
        val_b = self._tensors(val) if val else None
        n = train_b.observations.shape[0]
        bs = self.cfg.batch_size if not self.cfg.use_sequences else max(1, self.cfg.batch_size // self.cfg.sequence_length)
        sharded = distributed.active()
        if sharded:  # each rank takes bs / world size rows of every global batch
            distributed.local_batch_size(bs, "bc.batch_size" if not self.cfg.use_sequences else
                                         f"bc.batch_size / bc.sequence_length ({bs} windows)")
        best_state = None
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        noise_gen = torch.Generator().manual_seed(self.seed + self.epoch + NOISE_SEED_OFFSET)
        bar = progress(total, "bc", enabled=progress_bar, unit="epoch")
        bar.update(self.epoch)
        try:
            while self.epoch < total:
                self.model.train()
                perm = torch.randperm(n, generator=gen).to(self.device)
                sum_loss = torch.zeros((), device=self.device)
                batches = 0
                for s in range(0, n, bs):
                    batch = self._augment(Batch(*(x[perm[s:s + bs]] for x in train_b)), noise_gen)
                    if sharded:  # this rank's rows of the global batch (noise drawn for all of it)
                        part, count = self._shard(batch, torch.arange(len(batch.mask), device=self.device))
                        sum_loss += self.train_step(part, count)["loss"]
                    else:
                        sum_loss += self.train_step(batch)["loss"]
                    batches += 1
                self.epoch += 1
                train_loss = (distributed.mean(float(sum_loss)) if sharded else float(sum_loss)) / max(batches, 1)
                self.history["train_loss"].append(train_loss)
                val_loss = self.evaluate_loss(val_b) if val_b is not None else float("nan")
                self.history["val_loss"].append(val_loss)
                if val_b is not None and val_loss < self.best_val_loss:
                    self.best_val_loss = val_loss
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                if self.logger is not None:
                    self.logger.scalar("losses/bc_train", train_loss, self.epoch)
                    if val_b is not None:
                        self.logger.scalar("losses/bc_validation", val_loss, self.epoch)
                bar.update(1)
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", refresh=False)
        finally:
            bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return self

    def _augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """``bc.observation_noise``: Gaussian noise on a training batch's observations, its standard
        deviation that fraction of each observation dimension's spread over the demonstrations."""
        sigma = self.cfg.observation_noise
        if sigma <= 0:
            return batch
        noise = torch.randn(batch.observations.shape, generator=generator).to(self.device)
        return batch._replace(observations=batch.observations + sigma * self.model.obs_std * noise)

    def train_step(self, batch: Union[Batch, Sequence[Trajectory]],
                   count: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """One gradient step on ``batch`` (a :class:`Batch`, actions standardised, or
        trajectories; under torchrun this rank's share with ``count``, see :meth:`_loss`).
        The model must exist (:meth:`learn` or :meth:`load` first). Returns ``{"loss": tensor}``
        (no device sync)."""
        self._require_model()
        if not isinstance(batch, Batch):
            batch = self._tensors(list(batch))
        if self._forward is None:
            self._forward = distributed.parallel(self.model)
        self.model.train()
        loss = self._loss(batch, self._forward, count)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate_loss(self, data: Union[Batch, Sequence[Trajectory]]) -> float:
        """Loss (as trained: MSE on standardised actions, or NLL) on a batch or trajectories."""
        if not isinstance(data, Batch):
            data = self._tensors(list(data))
        self.model.eval()
        return float(self._loss(data))

    @property
    def validation_loss(self) -> float:
        """Best validation loss seen (the weights kept), NaN without a validation set."""
        return self.best_val_loss if math.isfinite(self.best_val_loss) else float("nan")

    # ------------------------------------------------------------------ acting
    def initial_state(self, batch_size: int = 1):
        """Zero LSTM state (None for the feed-forward policy)."""
        if not self.cfg.use_sequences:
            return None
        h = torch.zeros(1, batch_size, self.cfg.lstm_hidden, device=self.device)
        return (h, h.clone())

    @torch.no_grad()
    def step(self, observation, state=None, deterministic: bool = True):
        """One step with explicit recurrent state: ``(action, new_state)``."""
        self._require_model()
        obs, single = as_batch(observation, (self.model.obs_mean.shape[0],))
        o = torch.as_tensor(obs, device=self.device)
        if self.cfg.use_sequences:
            state = state if state is not None else self.initial_state(len(obs))
            mean, log_std, state = self.model(o[:, None], state)
            mean = mean[:, 0]
            log_std = None if log_std is None else log_std[:, 0]
        else:
            mean, log_std, _ = self.model(o)
        if not deterministic and log_std is not None:
            mean = mean + log_std.exp() * torch.randn_like(mean)
        action = self.model.to_action(mean).cpu().numpy()
        return (action[0] if single else action), state

    def predict(self, observation, deterministic: bool = True) -> np.ndarray:
        """Action(s) for one observation or a batch; NumPy in, NumPy out."""
        return self.step(observation, None, deterministic)[0]

    def _require_model(self) -> None:
        if self.model is None:
            raise RuntimeError("behavioral cloning: no model yet (call learn() or load() first)")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        self._require_model()
        return {
            "algorithm": self.algorithm,
            "observation_dim": int(self.model.obs_mean.shape[0]),
            "action_dim": int(self.model.act_mean.shape[0]),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": {k: list(v) for k, v in self.history.items()},
            "best_val_loss": self.best_val_loss,
            "seed": self.seed,
            "rng": rng_state(self.np_rng),
        }

    def save(self, path: Union[str, os.PathLike]) -> Path:
        return save_checkpoint(path, self.algorithm, self.state_dict(), config=self.config.to_dict(),
                               interface_fingerprint=self.interface_fingerprint)

    def load(self, path: Union[str, os.PathLike]) -> "BehavioralCloning":
        data = load_checkpoint(path, kind=self.algorithm)
        if data.get("config") is not None:
            self.config = config_from_dict(data["config"], source=str(path))
            self.cfg = self.config.bc
        self._build(int(data["observation_dim"]), int(data["action_dim"]))
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.epoch = int(data["epoch"])
        self.history = {k: list(v) for k, v in data["history"].items()}
        self.best_val_loss = float(data["best_val_loss"])
        self.seed = int(data["seed"])
        self.interface_fingerprint = data.get("interface_fingerprint")
        set_rng_state(data["rng"], self.np_rng)
        return self
