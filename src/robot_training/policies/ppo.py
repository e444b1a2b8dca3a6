"""Proximal Policy Optimization (clipped surrogate, GAE), continuous or discrete actions.

Read top to bottom: the network, then :class:`PPO` with ``learn`` (collect a rollout from
vector envs, compute GAE advantages, then ``train_step``: several epochs of minibatch
updates on that rollout batch), ``predict``, and the checkpoint payload (``payload`` /
``load_payload``). The vector envs' stepping, ``state_dict`` / ``load_state_dict``,
``save`` / ``load`` and ``from_state`` are :class:`robot_training.policies.common.VectorEnvLearner`'s.

Hyperparameters are ``Config.policy`` (:class:`robot_training.config.PolicyConfig`).
Time-limit truncations are bootstrapped: the reward of a truncated step gets
``gamma * V(final_obs)`` added, then the episode is treated as ended.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robot_training.config import PolicyConfig
from robot_training.networks.distributions import (
    categorical_entropy,
    categorical_log_prob,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
)
from robot_training.networks.mlp import mlp
from robot_training.networks.normalization import RunningNorm
from robot_training.policies.common import DeployedPolicy, EnvLoop, Transition, VectorEnvLearner, as_batch
from robot_training.utils.optim import adam


def _orthogonal(module: nn.Sequential, hidden_gain: float, out_gain: float) -> nn.Sequential:
    linears = [m for m in module if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, out_gain if i == len(linears) - 1 else hidden_gain)
        nn.init.zeros_(layer.bias)
    return module


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (tanh) over normalised observations."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden_dim: int, num_layers: int, norm_obs: bool):
        super().__init__()
        self.norm_obs = norm_obs
        self.obs_norm = RunningNorm(obs_dim)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.critic = _orthogonal(mlp(obs_dim, 1, hidden_dim, num_layers, nn.Tanh), math.sqrt(2), 1.0)
        if self.discrete:
            self.actor = _orthogonal(mlp(obs_dim, int(action_space.n), hidden_dim, num_layers, nn.Tanh),
                                     math.sqrt(2), 0.01)
        else:
            adim = int(np.prod(action_space.shape))
            self.actor = _orthogonal(mlp(obs_dim, adim, hidden_dim, num_layers, nn.Tanh), math.sqrt(2), 0.01)
            self.actor_logstd = nn.Parameter(torch.zeros(adim))
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_norm(obs) if self.norm_obs else obs

    def value(self, nobs: torch.Tensor) -> torch.Tensor:
        return self.critic(nobs).squeeze(-1)

    def act(self, nobs: torch.Tensor, deterministic: bool = False):
        """Sampled (or mode) action, its log-probability, and the value, for normalised obs."""
        out = self.actor(nobs)
        if self.discrete:
            action = out.argmax(-1) if deterministic else categorical_sample(out)
            logp = categorical_log_prob(out, action)
        else:
            log_std = self.actor_logstd.expand_as(out)
            action = out if deterministic else out + log_std.exp() * torch.randn_like(out)
            logp = gaussian_log_prob(action, out, log_std)
        return action, logp, self.value(nobs)

    def evaluate(self, nobs: torch.Tensor, actions: torch.Tensor):
        """Log-probability and entropy of ``actions``, and the value."""
        out = self.actor(nobs)
        if self.discrete:
            return categorical_log_prob(out, actions), categorical_entropy(out), self.value(nobs)
        log_std = self.actor_logstd.expand_as(out)
        return gaussian_log_prob(actions, out, log_std), gaussian_entropy(log_std), self.value(nobs)


class _RolloutBuffers(NamedTuple):
    """One rollout's ``(num_steps, num_envs, ...)`` tensors, in :meth:`PPO._advantages`' order."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor

    @classmethod
    def make(cls, n_steps: int, n_envs: int, obs_shape, act_shape, device) -> "_RolloutBuffers":
        shapes = ((*obs_shape,), (*act_shape,), (), (), (), ())
        return cls(*(torch.zeros((n_steps, n_envs, *shape), device=device) for shape in shapes))


class RolloutBatch(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


class PPO(VectorEnvLearner):
    """PPO over ``observation_space``/``action_space``; ``learn`` needs an ``env``. Built with
    ``(observation_space, action_space, config=None, env=None, seed=0, device="cpu", logger=None)``."""

    algorithm = "ppo"
    counters = ("num_timesteps", "iteration")
    cfg: PolicyConfig

    def build(self) -> None:
        self.model = ActorCritic(self.observation_space.shape[0], self.action_space, self.cfg.hidden_dim,
                                 self.cfg.num_layers, self.cfg.norm_obs).to(self.device)
        self.optimizer = adam(self.model.parameters(), lr=self.cfg.learning_rate, eps=1e-5)
        self.ret_norm = RunningNorm(())  # running variance of discounted returns (norm_reward)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict(self, observation, deterministic: bool = True) -> np.ndarray:
        """Action(s) for one observation or a batch; NumPy in, NumPy out."""
        obs, single = as_batch(observation, self.observation_space.shape)
        nobs = self.model.normalize(torch.as_tensor(obs, device=self.device))
        action, _, _ = self.model.act(nobs, deterministic)
        action = self._to_env_action(action)
        return action[0] if single else action

    def _to_env_action(self, action: torch.Tensor) -> np.ndarray:
        a = action.cpu().numpy()
        if self.model.discrete:
            return a.astype(np.int64) + int(self.action_space.start)
        return np.clip(a, self.action_space.low, self.action_space.high).astype(np.float32)

    # ------------------------------------------------------------------ training
    def learn(self, total_timesteps: int, callback: Optional[Callable[["PPO"], Optional[bool]]] = None,
              progress_bar: bool = False) -> "PPO":
        """Train until ``num_timesteps`` reaches ``total_timesteps`` (env steps over all envs).

        ``callback(self)`` runs after every update; returning ``False`` stops. A resumed
        model continues towards the same total.
        """
        cfg = self.cfg
        loop = EnvLoop(self, cfg.num_envs, total_timesteps, self.seed + self.iteration * 7919, progress_bar)
        loop.envs.action_space.seed(self.seed + self.iteration)
        buffers = _RolloutBuffers.make(cfg.num_steps, cfg.num_envs, self.observation_space.shape,
                                  () if self.model.discrete else (int(np.prod(self.action_space.shape)),),
                                  self.device)
        disc_returns = np.zeros(cfg.num_envs)

        def iteration() -> None:
            nonlocal disc_returns
            if cfg.anneal_lr:
                frac = max(1.0 - self.num_timesteps / max(total_timesteps, 1), 0.0)
                self.optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
            disc_returns = self._rollout(loop, buffers, disc_returns)
            losses = self.train_step(self._advantages(*buffers, self._value(loop.observations)))
            self.iteration += 1
            if self.logger is not None:
                self.logger.scalars(losses, self.num_timesteps, prefix="losses/")
                self.logger.scalar("charts/learning_rate", self.optimizer.param_groups[0]["lr"], self.num_timesteps)
                self.logger.scalar("charts/SPS", loop.steps_per_second(), self.num_timesteps)

        loop.run(iteration, callback)
        return self

    @torch.no_grad()
    def _value(self, obs_np: np.ndarray) -> torch.Tensor:
        return self.model.value(self.model.normalize(torch.as_tensor(obs_np, dtype=torch.float32, device=self.device)))

    def _rollout(self, loop: EnvLoop, b: "_RolloutBuffers", disc_returns: np.ndarray) -> np.ndarray:
        """``num_steps`` steps of the current policy into ``b`` (rewards normalised and
        time-limit cuts bootstrapped); returns the running discounted returns."""
        cfg, dev, gamma = self.cfg, self.device, self.cfg.gamma
        for t in range(cfg.num_steps):
            if cfg.norm_obs:
                self.model.obs_norm.update(loop.observations)
            with torch.no_grad():
                nobs = self.model.normalize(torch.as_tensor(loop.observations, dtype=torch.float32, device=dev))
                action, logp, value = self.model.act(nobs)
            b.obs[t], b.actions[t], b.logp[t], b.values[t] = nobs, action, logp, value
            step: Transition = loop.step(self._to_env_action(action))
            reward = np.asarray(step.rewards, dtype=np.float64)
            if cfg.norm_reward:
                disc_returns = disc_returns * gamma + reward
                self.ret_norm.update(disc_returns)
                reward = reward / math.sqrt(float(self.ret_norm.var) + 1e-8)
                disc_returns[step.dones] = 0.0
            if step.truncated.any():  # bootstrap the time-limit cut with V(final observation)
                idx = np.nonzero(step.truncated & ~step.terminated)[0]
                if len(idx):
                    reward[idx] += gamma * self._value(step.final_observations()[idx]).cpu().numpy()
            b.rewards[t] = torch.as_tensor(reward, dtype=torch.float32, device=dev)
            b.ends[t] = torch.as_tensor(step.dones, dtype=torch.float32, device=dev)
        return disc_returns

    def _advantages(self, obs, actions, logp, values, rewards, ends, next_value) -> RolloutBatch:
        cfg = self.cfg
        n_steps = rewards.shape[0]
        adv = torch.zeros_like(rewards)
        last = torch.zeros_like(next_value)
        for t in reversed(range(n_steps)):
            nxt = next_value if t == n_steps - 1 else values[t + 1]
            nonterminal = 1.0 - ends[t]
            delta = rewards[t] + cfg.gamma * nxt * nonterminal - values[t]
            last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
            adv[t] = last
        returns = adv + values
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        return RolloutBatch(flat(obs), flat(actions), flat(logp), flat(adv), flat(returns), flat(values))

    def train_step(self, b: RolloutBatch) -> Dict[str, float]:
        """One PPO update on a rollout batch: ``update_epochs`` epochs of ``num_minibatches``
        clipped-surrogate minibatch steps (stopping early past ``target_kl``); the mean losses."""
        cfg = self.cfg
        n = b.observations.shape[0]
        minibatch = max(1, n // cfg.num_minibatches)
        sums = torch.zeros(6)
        count = 0
        stop = False
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, minibatch):
                idx = perm[start:start + minibatch]
                new_logp, entropy, new_value = self.model.evaluate(b.observations[idx], b.actions[idx])
                log_ratio = new_logp - b.log_probs[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clipfrac = ((ratio - 1.0).abs() > cfg.ppo_clip).float().mean()
                adv = b.advantages[idx]
                if cfg.norm_adv and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.ppo_clip, 1 + cfg.ppo_clip)).mean()
                ret = b.returns[idx]
                if cfg.clip_vloss:
                    v_clipped = b.values[idx] + (new_value - b.values[idx]).clamp(-cfg.ppo_clip, cfg.ppo_clip)
                    v_loss = 0.5 * torch.max((new_value - ret) ** 2, (v_clipped - ret) ** 2).mean()
                else:
                    v_loss = 0.5 * ((new_value - ret) ** 2).mean()
                ent = entropy.mean()
                loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                sums += torch.stack([pg_loss, v_loss, ent, approx_kl, clipfrac, loss]).detach().cpu()
                count += 1
            if cfg.target_kl is not None and float(approx_kl) > cfg.target_kl:
                stop = True
            if stop:
                break
        means = (sums / max(count, 1)).tolist()
        y_pred, y_true = b.values, b.returns
        var_y = torch.var(y_true)
        explained = float("nan") if var_y == 0 else float(1 - torch.var(y_true - y_pred) / var_y)
        return {"policy_loss": means[0], "value_loss": means[1], "entropy": means[2], "approx_kl": means[3],
                "clipfrac": means[4], "total_loss": means[5], "explained_variance": explained}

    # ------------------------------------------------------------------ checkpoint payload
    def payload(self) -> dict:
        """Weights, optimiser and normalisers (the base adds spaces, counters, seed, RNG state)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "return_norm": self.ret_norm.state_dict()}

    def load_payload(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ret_norm.load_state_dict(state["return_norm"])


class PPOPolicy(DeployedPolicy):
    """What acting with a PPO checkpoint needs: the actor-critic network (its observation
    normaliser inside) and the spaces, no optimiser or return normaliser. ``PPOPolicy(state,
    config, device="cpu")``; ``predict`` is :meth:`PPO.predict`."""

    algorithm = "ppo"

    def build(self, state: dict, cfg: PolicyConfig) -> None:
        self.model = ActorCritic(self.observation_space.shape[0], self.action_space, cfg.hidden_dim,
                                 cfg.num_layers, cfg.norm_obs).to(self.device)
        self.model.load_state_dict(state["model"])
        self.model.eval()

    predict = PPO.predict
    _to_env_action = PPO._to_env_action
