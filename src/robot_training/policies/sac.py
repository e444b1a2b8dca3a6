"""Soft Actor-Critic: twin Q with Polyak targets, automatic temperature, tanh-squashed
Gaussian actor, replay buffer.

Read top to bottom: the networks (the twin Q functions are one batched ensemble, so both are
evaluated and updated by a single ``baddbmm`` per layer), then :class:`SAC`: ``explore``,
``train_step``, ``predict`` and the checkpoint payload. ``learn`` (one env step, then
``updates_per_step`` calls of ``train_step``), ``save`` / ``load`` and the replay's side
file are the off-policy learner's (:class:`robot_training.policies.common.OffPolicyLearner`).
Hyperparameters are ``Config.sac`` (:class:`robot_training.config.SACConfig`);
``policy_frequency`` delays the actor update (and then runs that many actor updates, so
their total count is unchanged).

The replay buffer is not in the checkpoint file: ``save_replay``/``load_replay`` write it
to an ``.npz`` file beside it (``save`` does this for every checkpoint).
"""

from __future__ import annotations

import math
from typing import Dict

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_training.config import SACConfig
from robot_training.data.replay import ReplayBatch, ReplayBuffer
from robot_training.networks.distributions import tanh_gaussian_sample
from robot_training.networks.mlp import mlp
from robot_training.policies.common import DeployedPolicy, OffPolicyLearner, as_batch
from robot_training.utils.optim import adam
from robot_training.utils.precision import autocast, check_precision

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied to ``(E, B, in)`` in one batched matmul."""

    def __init__(self, ensemble: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class SoftQNetworks(nn.Module):
    """Twin (``ensemble``) Q functions ``Q_i(s, a)``, evaluated together: returns ``(E, B)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int, num_layers: int, ensemble: int = 2):
        super().__init__()
        self.ensemble = ensemble
        dims = [obs_dim + action_dim] + [hidden_dim] * num_layers
        self.hidden = nn.ModuleList(EnsembleLinear(ensemble, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(ensemble, dims[-1], 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        x = x.unsqueeze(0).expand(self.ensemble, *x.shape)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x).squeeze(-1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian; ``action_scale``/``action_bias`` are buffers (they travel with
    the weights)."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, hidden_dim: int, num_layers: int):
        super().__init__()
        action_dim = int(np.prod(action_space.shape))
        self.trunk = mlp(obs_dim, None, hidden_dim, num_layers, nn.ReLU)
        self.head = nn.Linear(hidden_dim, 2 * action_dim)  # mean and log-std
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor):
        mean, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(self, obs: torch.Tensor):
        """Action in the env's bounds and its log-probability (up to the constant scale term)."""
        mean, log_std = self(obs)
        squashed, log_prob = tanh_gaussian_sample(mean, log_std)
        return squashed * self.action_scale + self.action_bias, log_prob

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class SAC(OffPolicyLearner):
    """SAC over a flat Box observation space and a Box action space. Built with
    ``(observation_space, action_space, config=None, env=None, seed=0, device="cpu", logger=None)``."""

    algorithm = "sac"
    cfg: SACConfig

    def build(self) -> None:
        cfg, action_space = self.cfg, self.action_space
        check_precision(cfg.precision, "sac.precision")
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"SAC needs a continuous (Box) action space, got {action_space}; use PPO for discrete")
        obs_dim, self.action_dim = self.observation_space.shape[0], int(np.prod(action_space.shape))
        self.actor = Actor(obs_dim, action_space, cfg.hidden_dim, cfg.num_layers).to(self.device)
        self.qf = SoftQNetworks(obs_dim, self.action_dim, cfg.hidden_dim, cfg.num_layers).to(self.device)
        self.qf_target = SoftQNetworks(obs_dim, self.action_dim, cfg.hidden_dim, cfg.num_layers).to(self.device)
        self.qf_target.load_state_dict(self.qf.state_dict())
        self.qf_target.requires_grad_(False)
        self.q_optimizer = adam(self.qf.parameters(), lr=cfg.q_lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=cfg.policy_lr)
        self.target_entropy = -float(self.action_dim)
        self.log_alpha = torch.tensor([math.log(cfg.alpha)], device=self.device, requires_grad=cfg.autotune)
        self.alpha_optimizer = adam([self.log_alpha], lr=cfg.q_lr) if cfg.autotune else None
        self.alpha = self.log_alpha.detach().exp()
        self.replay = ReplayBuffer(cfg.buffer_size, self.observation_space.shape, self.action_dim, self.device,
                                   seed=self.seed)
        self._q_params = list(self.qf.parameters())
        self._q_target_params = list(self.qf_target.parameters())

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict(self, observation, deterministic: bool = True) -> np.ndarray:
        """Action(s) for one observation or a batch; NumPy in, NumPy out."""
        obs, single = as_batch(observation, self.observation_space.shape)
        o = torch.as_tensor(obs, device=self.device)
        action = self.actor.mode(o) if deterministic else self.actor.sample(o)[0]
        action = action.cpu().numpy().reshape(len(obs), *self.action_space.shape)
        return action[0] if single else action

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def explore(self, observations: np.ndarray) -> np.ndarray:
        """Sampled actions to collect with (``learn`` takes uniform ones before ``learning_starts``)."""
        a, _ = self.actor.sample(torch.as_tensor(observations, dtype=torch.float32, device=self.device))
        return a.cpu().numpy().reshape(len(observations), *self.action_space.shape)

    def _autocast(self):
        return autocast(self.device, self.cfg.precision, key="sac.precision", width=self.cfg.hidden_dim)

    def train_step(self, batch: ReplayBatch) -> Dict[str, torch.Tensor]:
        """One gradient update of the Q functions (and, every ``policy_frequency`` updates,
        the actor and temperature). Losses are returned as tensors: no device sync here."""
        cfg = self.cfg
        with torch.no_grad(), self._autocast():
            next_a, next_logp = self.actor.sample(batch.next_observations)
            q_next = self.qf_target(batch.next_observations, next_a).min(0).values - self.alpha * next_logp
            target = batch.rewards + (1.0 - batch.terminals) * cfg.gamma * q_next.float()
        with self._autocast():
            q = self.qf(batch.observations, batch.actions).float()
        qf_loss = (q - target).pow(2).mean(1).sum()  # sum of both MSEs
        self.q_optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        self.q_optimizer.step()
        self.num_updates += 1
        out = {"qf_loss": qf_loss.detach(), "qf_values": q.detach().mean()}
        if self.num_updates % cfg.policy_frequency == 0:
            self.qf.requires_grad_(False)
            for _ in range(cfg.policy_frequency):
                with self._autocast():
                    a, logp = self.actor.sample(batch.observations)
                    q_pi = self.qf(batch.observations, a).min(0).values
                logp = logp.float()
                actor_loss = (self.alpha * logp - q_pi.float()).mean()
                self.actor_optimizer.zero_grad(set_to_none=True)
                actor_loss.backward()
                self.actor_optimizer.step()
                if self.alpha_optimizer is not None:
                    alpha_loss = (-self.log_alpha.exp() * (logp.detach() + self.target_entropy)).mean()
                    self.alpha_optimizer.zero_grad(set_to_none=True)
                    alpha_loss.backward()
                    self.alpha_optimizer.step()
                    self.alpha = self.log_alpha.detach().exp()
                    out["alpha_loss"] = alpha_loss.detach()
            self.qf.requires_grad_(True)
            out["actor_loss"] = actor_loss.detach()
            out["alpha"] = self.alpha.squeeze()
        if self.num_updates % cfg.target_network_frequency == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._q_target_params, self._q_params, cfg.tau)
        return out

    # ------------------------------------------------------------------ checkpoint payload
    def payload(self) -> dict:
        """Weights, temperature and optimisers (the base adds spaces, counters, seed, RNG state;
        the replay goes to its own file)."""
        return {
            "actor": self.actor.state_dict(),
            "qf": self.qf.state_dict(),
            "qf_target": self.qf_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "q_optimizer": self.q_optimizer.state_dict(),
            "alpha_optimizer": None if self.alpha_optimizer is None else self.alpha_optimizer.state_dict(),
        }

    def load_payload(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.qf.load_state_dict(state["qf"])
        self.qf_target.load_state_dict(state["qf_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha = self.log_alpha.detach().exp()
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        if self.alpha_optimizer is not None and state.get("alpha_optimizer") is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])


class SACPolicy(DeployedPolicy):
    """What acting with a SAC checkpoint needs, and nothing else: the actor and the spaces (no
    critics, optimisers, entropy temperature or replay). ``SACPolicy(state, config,
    device="cpu")``; ``predict`` is :meth:`SAC.predict`."""

    algorithm = "sac"

    def build(self, state: dict, cfg: SACConfig) -> None:
        self.actor = Actor(self.observation_space.shape[0], self.action_space, cfg.hidden_dim,
                           cfg.num_layers).to(self.device)
        self.actor.load_state_dict(state["actor"])
        self.actor.eval()

    predict = SAC.predict
