"""Output heads of the world model and the agent: symlog, two-hot bins, Bernoulli, actor.

*symlog* squashes large magnitudes, ``symlog(x) = sign(x) * log(1 + |x|)``, and *symexp* is
its inverse. Rewards and values are predicted as a categorical distribution over
``num_bins`` bins spaced evenly in symlog space between -20 and 20; a target is encoded
"two-hot" (its weight split between the two nearest bins), so the cross-entropy loss does not
depend on the scale of the returns and the prediction is the probability-weighted bin value.
"""

from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def dense_block(in_dim: int, hidden_dim: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` × (Linear without bias → LayerNorm → SiLU): the trunk of every head."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.LayerNorm(hidden_dim), nn.SiLU()]
        dim = hidden_dim
    return nn.Sequential(*layers)


def zero_init_(layer: nn.Linear) -> nn.Linear:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return layer


class TwoHotHead(nn.Module):
    """Scalar prediction as a distribution over symlog-spaced bins (reward and value heads).

    ``forward(feature)`` gives logits ``(..., num_bins)``; :meth:`mean` the predicted scalar
    in the original scale; :meth:`loss` the two-hot cross-entropy against a scalar target.
    The output layer starts at zero, so the first predictions are exactly 0.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int, num_bins: int = 255,
                 low: float = -20.0, high: float = 20.0):
        super().__init__()
        self.trunk = dense_block(in_dim, hidden_dim, num_layers)
        self.out = zero_init_(nn.Linear(hidden_dim if num_layers else in_dim, num_bins))
        self.register_buffer("bins", torch.linspace(low, high, num_bins), persistent=False)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(feature))

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((logits.softmax(-1) * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the two-hot encoding of ``symlog(target)``; shape of ``target``."""
        return -(two_hot(symlog(target), self.bins) * logits.log_softmax(-1)).sum(-1)


def two_hot(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Weights ``(..., num_bins)`` on the two bins around each value of ``x`` (clamped)."""
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    span = bins[above] - bins[below]
    weight_above = ((x - bins[below]) / span).unsqueeze(-1)
    return (F.one_hot(below, len(bins)) * (1 - weight_above)
            + F.one_hot(above, len(bins)) * weight_above)


class BernoulliHead(nn.Module):
    """Probability that the episode continues (logits out)."""

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.trunk = dense_block(in_dim, hidden_dim, num_layers)
        self.out = nn.Linear(hidden_dim if num_layers else in_dim, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(feature)).squeeze(-1)

    @staticmethod
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


class GaussianActor(nn.Module):
    """Continuous actions in ``[-1, 1]``: a tanh-squashed mean and a bounded learned std.

    The distribution is a Normal whose sample is clipped into ``[-1, 1]`` (as in DreamerV3's
    bounded normal); :meth:`distribution` returns it so callers can sample, take log-probs
    and entropy without a custom distribution class.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden_dim: int, num_layers: int,
                 min_std: float = 0.1, max_std: float = 1.0):
        super().__init__()
        self.trunk = dense_block(in_dim, hidden_dim, num_layers)
        self.out = nn.Linear(hidden_dim if num_layers else in_dim, 2 * action_dim)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
        self.min_std, self.max_std = min_std, max_std

    def distribution(self, feature: torch.Tensor) -> torch.distributions.Normal:
        mean, std = self.out(self.trunk(feature)).chunk(2, dim=-1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return torch.distributions.Normal(torch.tanh(mean), std)


def action_log_prob(dist: torch.distributions.Normal, action: torch.Tensor) -> torch.Tensor:
    return dist.log_prob(action).sum(-1)


def action_entropy(dist: torch.distributions.Normal) -> torch.Tensor:
    return dist.entropy().sum(-1)


