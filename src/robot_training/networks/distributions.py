"""Action distributions written once: diagonal Gaussian, categorical, tanh-squashed Gaussian.

Plain functions over tensors (no ``torch.distributions`` objects), so the hot loops of PPO and
SAC pay for no argument validation or object construction.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over the last dimension."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, summed over the last dimension."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


def categorical_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=-1)
    return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def categorical_sample(logits: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(-1)


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample ``tanh(u)``, ``u ~ N(mean, std)``, and its log-probability.

    The change of variables uses ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``,
    which stays finite where ``tanh`` saturates. The result lies in ``(-1, 1)``; scale it to
    the action bounds outside (the constant log-scale term does not change any gradient).
    """
    std = log_std.exp()
    u = mean + std * torch.randn_like(mean)
    log_prob = gaussian_log_prob(u, mean, log_std)
    log_prob = log_prob - (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob
