"""Recurrent state-space model: a deterministic GRU state and a stochastic latent state.

The model state is a plain dict of tensors, passed in and returned explicitly (nothing is
kept inside the module between calls)::

    {"deter": (..., state_dim),           # GRU state h_t
     "stoch": (..., stoch_size),          # sample z_t (flattened one-hots, or Gaussian)
     "stats": (..., stats_size)}          # logits (categorical) or mean‖std (Gaussian)

One step of the prior (imagination) and of the posterior (observation)::

    h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])       prior    p(z_t | h_t)
    posterior q(z_t | h_t, embed(o_t))

Categorical latents are ``stoch_dim`` variables of ``num_classes`` classes, mixed with
``unimix`` of the uniform distribution and sampled with straight-through gradients
(``one_hot + probs - probs.detach()``). ``latent="gaussian"`` gives PlaNet's diagonal
Gaussian with reparameterised samples.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from robot_training.utils.distributed import batch_noise

State = Dict[str, torch.Tensor]


class NormGRUCell(nn.Module):
    """GRU with one fused input/recurrent projection and LayerNorm (DreamerV3's cell)."""

    def __init__(self, input_dim: int, state_dim: int):
        super().__init__()
        self.linear = nn.Linear(input_dim + state_dim, 3 * state_dim, bias=False)
        self.norm = nn.LayerNorm(3 * state_dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        reset, candidate, update = self.norm(self.linear(torch.cat([x, state], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        candidate = torch.tanh(reset * candidate)
        update = torch.sigmoid(update - 1.0)  # bias towards keeping the state
        return update * candidate + (1 - update) * state


def _layer(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim), nn.SiLU())


class RSSM(nn.Module):
    def __init__(self, action_dim: int, embed_dim: int, state_dim: int = 256, hidden_dim: int = 256,
                 stoch_dim: int = 32, num_classes: int = 32, latent: str = "categorical",
                 unimix: float = 0.01, min_std: float = 0.1):
        super().__init__()
        if latent not in ("categorical", "gaussian"):
            raise ValueError(f"world_model.latent must be 'categorical' or 'gaussian', got {latent!r}")
        self.latent, self.unimix, self.min_std = latent, unimix, min_std
        self.state_dim, self.stoch_dim, self.num_classes = state_dim, stoch_dim, num_classes
        self.stoch_size = stoch_dim * num_classes if latent == "categorical" else stoch_dim
        stats_size = self.stoch_size if latent == "categorical" else 2 * stoch_dim
        self.action_dim = action_dim
        self.img_in = _layer(self.stoch_size + action_dim, hidden_dim)
        self.gru = NormGRUCell(hidden_dim, state_dim)
        self.prior_net = nn.Sequential(_layer(state_dim, hidden_dim), nn.Linear(hidden_dim, stats_size))
        self.posterior_net = nn.Sequential(_layer(state_dim + embed_dim, hidden_dim),
                                           nn.Linear(hidden_dim, stats_size))

    @property
    def feature_dim(self) -> int:
        return self.stoch_size + self.state_dim

    # ------------------------------------------------------------------ states
    def initial_state(self, batch_size: int, device=None) -> State:
        device = device or self.gru.linear.weight.device
        stats_size = self.prior_net[-1].out_features
        return {"deter": torch.zeros(batch_size, self.state_dim, device=device),
                "stoch": torch.zeros(batch_size, self.stoch_size, device=device),
                "stats": torch.zeros(batch_size, stats_size, device=device)}

    @staticmethod
    def feature(state: State) -> torch.Tensor:
        return torch.cat([state["stoch"], state["deter"]], -1)

    def _stats(self, raw: torch.Tensor) -> torch.Tensor:
        """Network output → logits with uniform mix (categorical) or mean‖std (Gaussian)."""
        if self.latent == "categorical":
            logits = raw.unflatten(-1, (self.stoch_dim, self.num_classes)).float()
            if self.unimix > 0:
                probs = (1 - self.unimix) * logits.softmax(-1) + self.unimix / self.num_classes
                logits = probs.log()
            return logits.flatten(-2)
        mean, std = raw.float().chunk(2, -1)
        std = 2 * torch.sigmoid(std / 2) + self.min_std
        return torch.cat([mean, std], -1)

    def sample(self, stats: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if self.latent == "categorical":
            logits = stats.unflatten(-1, (self.stoch_dim, self.num_classes))
            probs = logits.softmax(-1)
            if deterministic:
                index = logits.argmax(-1)
            else:  # inverse CDF: one uniform number per latent variable
                uniform = batch_noise(torch.rand, probs.shape[:-1] + (1,), device=probs.device, dtype=probs.dtype)
                index = (probs.cumsum(-1) < uniform).sum(-1).clamp(max=self.num_classes - 1)
            one_hot = F.one_hot(index, self.num_classes).to(probs.dtype)
            return (one_hot + probs - probs.detach()).flatten(-2)  # straight-through
        mean, std = stats.chunk(2, -1)
        return mean if deterministic else mean + std * batch_noise(torch.randn, std.shape, device=std.device,
                                                                   dtype=std.dtype)

    # ------------------------------------------------------------------ steps
    def imagine_step(self, state: State, action: torch.Tensor, deterministic: bool = False) -> State:
        """Prior step: ``(state_{t-1}, a_{t-1}) → state_t`` without an observation."""
        x = self.img_in(torch.cat([state["stoch"], action], -1))
        deter = self.gru(x, state["deter"]).to(state["deter"].dtype)
        stats = self._stats(self.prior_net(deter))
        return {"deter": deter, "stoch": self.sample(stats, deterministic), "stats": stats}

    def observe_step(self, state: State, action: torch.Tensor, embed: torch.Tensor,
                     is_first: Optional[torch.Tensor] = None,
                     deterministic: bool = False) -> Tuple[State, State]:
        """``(posterior_t, prior_t)``; ``is_first`` (bool ``(B,)``) resets state and action."""
        if is_first is not None:
            keep = (~is_first).to(action.dtype).unsqueeze(-1)
            state = {k: v * keep for k, v in state.items()}
            action = action * keep
        prior = self.imagine_step(state, action, deterministic)
        stats = self._stats(self.posterior_net(torch.cat([prior["deter"], embed], -1)))
        posterior = {"deter": prior["deter"], "stoch": self.sample(stats, deterministic), "stats": stats}
        return posterior, prior

    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                state: Optional[State] = None) -> Tuple[State, State]:
        """Run the posterior over sequences ``(B, T, ...)`` → stacked ``(B, T, ...)`` states.

        ``action[:, t]`` is the action taken *before* observation ``t`` (zeros at episode starts).
        """
        batch, length = embed.shape[:2]
        if state is None:
            state = self.initial_state(batch, embed.device)
        posteriors, priors = [], []
        for t in range(length):
            state, prior = self.observe_step(state, action[:, t], embed[:, t], is_first[:, t])
            posteriors.append(state)
            priors.append(prior)
        return _stack(posteriors, 1), _stack(priors, 1)

    def imagine(self, state: State, actions: torch.Tensor) -> State:
        """Open loop under given actions ``(B, H, A)`` → prior states ``(B, H, ...)``."""
        states = []
        for t in range(actions.shape[1]):
            state = self.imagine_step(state, actions[:, t])
            states.append(state)
        return _stack(states, 1)

    def rollout(self, state: State, policy: Callable[[State], torch.Tensor], horizon: int) -> Tuple[State, torch.Tensor]:
        """Imagine ``horizon`` steps choosing actions with ``policy(state)``.

        Returns states ``(H + 1, N, ...)`` (the start first) and actions ``(H, N, A)``.
        """
        states, actions = [state], []
        for _ in range(horizon):
            action = policy(state)
            state = self.imagine_step(state, action)
            states.append(state)
            actions.append(action)
        return _stack(states, 0), torch.stack(actions, 0)

    # ------------------------------------------------------------------ losses
    def kl(self, posterior: State, prior: State, free_bits: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dyn_loss, rep_loss, kl_value)`` per step, each clipped below at ``free_bits`` nats.

        ``dyn`` trains the prior towards the (frozen) posterior, ``rep`` the posterior towards
        the (frozen) prior.
        """
        post, pri = posterior["stats"], prior["stats"]
        dyn = self._kl(post.detach(), pri)
        rep = self._kl(post, pri.detach())
        return dyn.clamp(min=free_bits), rep.clamp(min=free_bits), dyn.detach()

    def _kl(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.latent == "categorical":
            p = p.unflatten(-1, (self.stoch_dim, self.num_classes)).log_softmax(-1)
            q = q.unflatten(-1, (self.stoch_dim, self.num_classes)).log_softmax(-1)
            return (p.exp() * (p - q)).sum((-2, -1))
        p_mean, p_std = p.chunk(2, -1)
        q_mean, q_std = q.chunk(2, -1)
        var_ratio = (p_std / q_std).square()
        return 0.5 * (var_ratio + ((p_mean - q_mean) / q_std).square() - 1 - var_ratio.log()).sum(-1)

    def entropy(self, state: State) -> torch.Tensor:
        if self.latent == "categorical":
            logp = state["stats"].unflatten(-1, (self.stoch_dim, self.num_classes)).log_softmax(-1)
            return -(logp.exp() * logp).sum((-2, -1))
        std = state["stats"].chunk(2, -1)[1]
        return (0.5 * (1 + torch.log(2 * torch.pi * std.square()))).sum(-1)


def _stack(states, dim: int) -> State:
    return {k: torch.stack([s[k] for s in states], dim) for k in states[0]}


def flatten_state(state: State, dims: int = 2) -> State:
    """Merge the first ``dims`` axes, e.g. ``(B, T, ...)`` → ``(B*T, ...)``."""
    return {k: v.flatten(0, dims - 1) for k, v in state.items()}


def detach_state(state: State) -> State:
    return {k: v.detach() for k, v in state.items()}
