"""Proximal Policy Optimization (clipped surrogate, GAE), continuous or discrete actions.

Read top to bottom: the network, then :class:`PPO` with ``learn`` (collect a rollout from
vector envs, compute GAE advantages, several epochs of minibatch updates), ``predict``,
and the explicit checkpoint payload (``state_dict`` / ``load_state_dict``).

Hyperparameters are ``Config.policy`` (:class:`robot_training.config.PolicyConfig`).
Time-limit truncations are bootstrapped: the reward of a truncated step gets
``gamma * V(final_obs)`` added, then the episode is treated as ended.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robot_training.checkpoint import rng_state, set_rng_state
from robot_training.config import Config, PolicyConfig
from robot_training.envs.make import EnvSpec, final_observations, make_vector_env, space_from_spec, space_spec
from robot_training.networks.distributions import (
    categorical_entropy,
    categorical_log_prob,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
)
from robot_training.networks.mlp import mlp
from robot_training.networks.normalization import RunningNorm
from robot_training.policies.common import EpisodeStats, as_batch
from robot_training.utils.logging import RunLogger, progress


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


class RolloutBatch(NamedTuple):
    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


class PPO:
    """PPO over ``observation_space``/``action_space``; ``learn`` needs an ``env``."""

    algorithm = "ppo"

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Optional[Config] = None,
                 env: Optional[EnvSpec] = None, seed: int = 0, device: str = "cpu",
                 logger: Optional[RunLogger] = None):
        self.config = config or Config()
        self.cfg: PolicyConfig = self.config.policy
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"PPO needs a flat Box observation space, got {observation_space}")
        self.observation_space, self.action_space = observation_space, action_space
        self.env_spec, self.seed, self.device = env, int(seed), torch.device(device)
        self.logger = logger
        self.model = ActorCritic(observation_space.shape[0], action_space, self.cfg.hidden_dim,
                                 self.cfg.num_layers, self.cfg.norm_obs).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.learning_rate, eps=1e-5)
        self.num_timesteps = 0
        self.iteration = 0
        self.ret_norm = RunningNorm(())  # running variance of discounted returns (norm_reward)
        self.np_rng = np.random.default_rng(self.seed)
        self._envs = None

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
        if self.env_spec is None:
            raise ValueError("PPO.learn needs an environment: pass env= (a Gymnasium id or factory)")
        cfg, dev = self.cfg, self.device
        n_envs, n_steps = cfg.num_envs, cfg.num_steps
        batch_size = n_envs * n_steps
        minibatch = max(1, batch_size // cfg.num_minibatches)
        if self._envs is None:
            self._envs = make_vector_env(self.env_spec, n_envs)
        envs = self._envs
        obs_np, _ = envs.reset(seed=self.seed + self.iteration * 7919)
        envs.action_space.seed(self.seed + self.iteration)
        stats = EpisodeStats(n_envs)
        disc_returns = np.zeros(n_envs)
        obs_shape = self.observation_space.shape
        act_shape = () if self.model.discrete else (int(np.prod(self.action_space.shape)),)
        b_obs = torch.zeros((n_steps, n_envs, *obs_shape), device=dev)
        b_actions = torch.zeros((n_steps, n_envs, *act_shape), device=dev)
        b_logp = torch.zeros((n_steps, n_envs), device=dev)
        b_values = torch.zeros((n_steps, n_envs), device=dev)
        b_rewards = torch.zeros((n_steps, n_envs), device=dev)
        b_ends = torch.zeros((n_steps, n_envs), device=dev)
        bar = progress(total_timesteps, "ppo", enabled=progress_bar)
        bar.update(self.num_timesteps)
        start_time, start_steps = time.time(), self.num_timesteps
        gamma = cfg.gamma
        try:
            while self.num_timesteps < total_timesteps:
                if cfg.anneal_lr:
                    frac = max(1.0 - self.num_timesteps / max(total_timesteps, 1), 0.0)
                    self.optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
                # ---- rollout
                for t in range(n_steps):
                    if cfg.norm_obs:
                        self.model.obs_norm.update(obs_np)
                    with torch.no_grad():
                        nobs = self.model.normalize(torch.as_tensor(obs_np, dtype=torch.float32, device=dev))
                        action, logp, value = self.model.act(nobs)
                    b_obs[t], b_actions[t], b_logp[t], b_values[t] = nobs, action, logp, value
                    obs_np, reward, term, trunc, infos = envs.step(self._to_env_action(action))
                    done = term | trunc
                    reward = np.asarray(reward, dtype=np.float64)
                    for ret, length in stats.step(reward, done):
                        self._log_episode(ret, length, bar)
                    if cfg.norm_reward:
                        disc_returns = disc_returns * gamma + reward
                        self.ret_norm.update(disc_returns)
                        reward = reward / math.sqrt(float(self.ret_norm.var) + 1e-8)
                        disc_returns[done] = 0.0
                    if trunc.any():  # bootstrap the time-limit cut with V(final observation)
                        real_next = final_observations(obs_np, infos, done)
                        idx = np.nonzero(trunc & ~term)[0]
                        if len(idx):
                            with torch.no_grad():
                                nfin = self.model.normalize(torch.as_tensor(real_next[idx], dtype=torch.float32,
                                                                            device=dev))
                                reward[idx] += gamma * self.model.value(nfin).cpu().numpy()
                    b_rewards[t] = torch.as_tensor(reward, dtype=torch.float32, device=dev)
                    b_ends[t] = torch.as_tensor(done, dtype=torch.float32, device=dev)
                    self.num_timesteps += n_envs
                    bar.update(n_envs)
                with torch.no_grad():
                    next_value = self.model.value(
                        self.model.normalize(torch.as_tensor(obs_np, dtype=torch.float32, device=dev)))
                batch = self._advantages(b_obs, b_actions, b_logp, b_values, b_rewards, b_ends, next_value)
                losses = self._update(batch, minibatch)
                self.iteration += 1
                if self.logger is not None:
                    sps = (self.num_timesteps - start_steps) / max(time.time() - start_time, 1e-9)
                    self.logger.scalars(losses, self.num_timesteps, prefix="losses/")
                    self.logger.scalar("charts/learning_rate", self.optimizer.param_groups[0]["lr"], self.num_timesteps)
                    self.logger.scalar("charts/SPS", sps, self.num_timesteps)
                if callback is not None and callback(self) is False:
                    break
        finally:
            bar.close()
        return self

    def _log_episode(self, ret: float, length: int, bar) -> None:
        if self.logger is not None:
            self.logger.scalar("charts/episodic_return", ret, self.num_timesteps)
            self.logger.scalar("charts/episodic_length", length, self.num_timesteps)
        bar.set_postfix(ep_return=f"{ret:.1f}", refresh=False)

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

    def _update(self, b: RolloutBatch, minibatch: int) -> Dict[str, float]:
        cfg = self.cfg
        n = b.observations.shape[0]
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
    def state_dict(self) -> dict:
        """Everything needed to resume: weights, optimiser, normalisers, counters, RNG states."""
        return {
            "algorithm": self.algorithm,
            "observation_space": space_spec(self.observation_space),
            "action_space": space_spec(self.action_space),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "return_norm": self.ret_norm.state_dict(),
            "num_timesteps": self.num_timesteps,
            "iteration": self.iteration,
            "seed": self.seed,
            "rng": rng_state(self.np_rng),
        }

    def load_state_dict(self, state: dict, restore_rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ret_norm.load_state_dict(state["return_norm"])
        self.num_timesteps = int(state["num_timesteps"])
        self.iteration = int(state["iteration"])
        if restore_rng:
            set_rng_state(state["rng"], self.np_rng)

    @classmethod
    def from_state(cls, state: dict, config: Config, env: Optional[EnvSpec] = None, device: str = "cpu",
                   logger: Optional[RunLogger] = None) -> "PPO":
        algo = cls(space_from_spec(state["observation_space"]), space_from_spec(state["action_space"]),
                   config=config, env=env, seed=int(state.get("seed", 0)), device=device, logger=logger)
        algo.load_state_dict(state)
        return algo

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


class PPOPolicy:
    """What acting with a PPO checkpoint needs: the actor-critic network (its observation
    normaliser inside) and the spaces, no optimiser or return normaliser. ``predict`` is
    :meth:`PPO.predict`; the deploy loader builds this, not a trainer."""

    algorithm = "ppo"

    def __init__(self, state: dict, config: Config, device: str = "cpu"):
        self.observation_space = space_from_spec(state["observation_space"])
        self.action_space = space_from_spec(state["action_space"])
        self.device = torch.device(device)
        cfg: PolicyConfig = config.policy
        self.model = ActorCritic(self.observation_space.shape[0], self.action_space, cfg.hidden_dim,
                                 cfg.num_layers, cfg.norm_obs).to(self.device)
        self.model.load_state_dict(state["model"])
        self.model.eval()

    predict = PPO.predict
    _to_env_action = PPO._to_env_action
