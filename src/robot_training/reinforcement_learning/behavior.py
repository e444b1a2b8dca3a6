"""Behaviour learned in imagination: actor, critic, λ-returns, return normalisation.

From every posterior state of a training batch (``N = B × T`` starts, or a random
``imagine_starts`` of them) the actor imagines ``imagine_horizon`` steps in the world model::

    s_0 ──a_0──▶ s_1 ──a_1──▶ … ──▶ s_H        r_t, c_t = reward and continue heads at s_t

    λ-returns   R_H = v(s_H),  R_t = r_{t+1} + γ c_{t+1} ((1 − λ) v(s_{t+1}) + λ R_{t+1})
    weights     w_t = Π_{i<t} γ c_i  (later steps count less once an episode may have ended)

Returns are normalised by ``S = max(1, P95 − P5)``, the EMA (``return_norm_decay``) of the
``return_norm_percentiles`` of the returns. The actor maximises ``R_t / S`` by backpropagating
through the world model (``actor_gradient: dynamics``) or ``log π(a_t|s_t) · sg((R_t − v_t) / S)``
(``reinforce``), plus ``actor_entropy`` × entropy. The critic predicts ``R_t`` as two-hot symlog
bins and is also pulled towards a slow copy of itself (updated every ``slow_critic_update``
steps by ``slow_critic_fraction``).

Losses come back in a dict with keys ``actor`` and ``critic``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Dict, Tuple

import torch
from torch import nn

from robot_training.config import Config
from robot_training.networks.heads import GaussianActor, TwoHotHead, action_entropy, action_log_prob
from robot_training.utils import distributed
from robot_training.utils.optim import adam
from robot_training.world_models.rssm import RSSM, State
from robot_training.world_models.world_model import WorldModel


@contextlib.contextmanager
def frozen(*modules: nn.Module):
    """Parameters do not collect gradients inside the block (inputs still do)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def lambda_returns(reward: torch.Tensor, discount: torch.Tensor, value: torch.Tensor, lambda_: float) -> torch.Tensor:
    """``reward``, ``discount`` ``(H, N)`` for steps 1..H, ``value`` ``(H + 1, N)`` → returns ``(H, N)``."""
    returns = [value[-1]]
    for t in reversed(range(reward.shape[0])):
        returns.append(reward[t] + discount[t] * ((1 - lambda_) * value[t + 1] + lambda_ * returns[-1]))
    return torch.stack(returns[1:][::-1], 0)


class ActorCritic(nn.Module):
    def __init__(self, feature_dim: int, action_dim: int, cfg: Config):
        super().__init__()
        d = cfg.dreamer
        self.actor = GaussianActor(feature_dim, action_dim, d.hidden_dim, d.mlp_layers)
        self.critic = TwoHotHead(feature_dim, d.hidden_dim, d.mlp_layers, cfg.world_model.num_bins)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("return_range", torch.zeros(2))  # EMA of the (low, high) percentiles
        self.register_buffer("return_range_ready", torch.zeros((), dtype=torch.bool))
        self.cfg = d

    def optimizers(self) -> Tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return (adam(self.actor.parameters(), lr=self.cfg.actor_lr, eps=1e-5),
                adam(self.critic.parameters(), lr=self.cfg.critic_lr, eps=1e-5))

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.lerp_(fast, self.cfg.slow_critic_fraction)

    @torch.no_grad()
    def _return_scale(self, returns: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        low, high = self.cfg.return_norm_percentiles
        flat = distributed.gather(returns.detach().float().flatten())  # the global batch's returns
        if flat.numel() > 16_000_000:  # torch.quantile's limit
            flat = flat[torch.randperm(flat.numel(), device=flat.device)[:1_000_000]]
        current = torch.quantile(flat, torch.tensor([low / 100, high / 100], device=flat.device))
        if not self.return_range_ready:
            self.return_range.copy_(current)
            self.return_range_ready.fill_(True)
        else:
            self.return_range.lerp_(current, 1 - self.cfg.return_norm_decay)
        offset = self.return_range[0]
        scale = (self.return_range[1] - self.return_range[0]).clamp(min=1.0)
        return offset, scale

    def imagine(self, world_model: WorldModel, start: State, horizon: int, through_dynamics: bool):
        """Roll the actor out in the world model.

        Returns states ``(H+1, N, ...)``, actions ``(H, N, A)`` and the policy's entropy and
        log-probability of its actions ``(H, N)`` (both differentiable w.r.t. the actor).
        ``through_dynamics`` keeps the graph through the world model (for the ``dynamics``
        gradient); otherwise the world model steps run without a graph.
        """
        rssm: RSSM = world_model.rssm
        states, actions, entropies, log_probs = [start], [], [], []
        state = start
        for _ in range(horizon):
            policy = self.actor.distribution(rssm.feature(state).detach())
            if through_dynamics:
                action = _sample(policy, grad=True).clamp(-1, 1)
                state = rssm.imagine_step(state, action)
            else:
                action = _sample(policy, grad=False).clamp(-1, 1)
                with torch.no_grad():
                    state = rssm.imagine_step(state, action)
            entropies.append(action_entropy(policy))
            log_probs.append(action_log_prob(policy, action.detach()))
            states.append(state)
            actions.append(action)
        stacked = {k: torch.stack([s[k] for s in states], 0) for k in start}
        return stacked, torch.stack(actions, 0), torch.stack(entropies, 0), torch.stack(log_probs, 0)

    def loss(self, world_model: WorldModel, posterior: State, is_terminal: torch.Tensor
             ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """``({"actor": …, "critic": …}, metrics)`` from imagination starting at ``posterior``."""
        d = self.cfg
        if d.actor_gradient not in ("dynamics", "reinforce"):
            raise ValueError(f"dreamer.actor_gradient must be 'dynamics' or 'reinforce', got {d.actor_gradient!r}")
        dynamics = d.actor_gradient == "dynamics"
        start = {k: v.detach().flatten(0, 1) for k, v in posterior.items()}
        is_terminal = is_terminal.flatten()
        starts = next(iter(start.values())).shape[0]
        # under torchrun each rank picks its share of imagine_starts among its own states
        subset = d.imagine_starts and -(-d.imagine_starts // distributed.world_size())
        if subset and subset < starts:  # a random subset: cheaper updates on CPUs
            pick = torch.randperm(starts, device=is_terminal.device)[:subset]
            start = {k: v[pick] for k, v in start.items()}
            is_terminal = is_terminal[pick]
        # without the dynamics gradient the world model runs without a graph anyway; leaving
        # its parameters trainable lets autocast cache their bfloat16 copies
        with frozen(world_model) if dynamics else contextlib.nullcontext():
            states, actions, entropy, log_prob = self.imagine(world_model, start, d.imagine_horizon, dynamics)
            feature = world_model.rssm.feature(states)
            with contextlib.nullcontext() if dynamics else torch.no_grad():
                reward = world_model.reward_head.mean(world_model.reward_head(feature[1:]).float())
                cont = torch.sigmoid(world_model.continue_head(feature).float())
        cont = torch.cat([1 - is_terminal.float()[None], cont[1:]], 0)
        if dynamics:  # the value must pass gradients to the features, not to the critic
            with frozen(self.critic):
                value = self.critic.mean(self.critic(feature).float())
            critic_logits = self.critic(feature[:-1].detach()).float()
        else:  # one critic pass serves the returns and the critic's own loss
            all_logits = self.critic(feature).float()
            value = self.critic.mean(all_logits.detach())
            critic_logits = all_logits[:-1]
        discount = d.discount * cont
        returns = lambda_returns(reward, discount[1:], value, d.lambda_)
        weight = torch.cumprod(torch.cat([torch.ones_like(discount[:1]), discount[:-1]], 0), 0).detach()[:-1]
        offset, scale = self._return_scale(returns)
        if dynamics:
            objective = (returns - offset) / scale
        else:
            objective = log_prob * ((returns - value[:-1]) / scale).detach()
        actor_loss = -(weight * (objective + d.actor_entropy * entropy)).mean()

        with torch.no_grad():
            slow_target = self.slow_critic.mean(self.slow_critic(feature[:-1].detach()).float())
        critic_loss = (weight * (self.critic.loss(critic_logits, returns.detach())
                                 + self.critic.loss(critic_logits, slow_target))).mean()
        metrics = {"imagined_reward": reward.mean().detach(), "imagined_return": returns.mean().detach(),
                   "value": value.mean().detach(), "return_scale": scale, "actor_entropy": entropy.mean().detach(),
                   "imagined_action_abs": actions.abs().mean().detach()}
        return {"actor": actor_loss, "critic": critic_loss}, metrics


def _sample(policy: torch.distributions.Normal, grad: bool) -> torch.Tensor:
    """``rsample()`` (``grad``) or ``sample()``; under torchrun the noise of the global batch,
    cut to this rank's rows (the same numbers: ``loc + N(0, 1) · scale``)."""
    if not distributed.active():
        return policy.rsample() if grad else policy.sample()
    noise = distributed.batch_noise(torch.randn, policy.loc.shape, dtype=policy.loc.dtype, device=policy.loc.device)
    with contextlib.nullcontext() if grad else torch.no_grad():
        return policy.loc + noise * policy.scale
