"""Multi-layer perceptrons."""

from __future__ import annotations

from typing import Optional, Type

import torch
from torch import nn


def mlp(
    in_dim: int,
    out_dim: Optional[int],
    hidden_dim: int = 256,
    num_layers: int = 2,
    activation: Type[nn.Module] = nn.ReLU,
    layer_norm: bool = False,
    out_init_scale: Optional[float] = None,
) -> nn.Sequential:
    """``num_layers`` hidden layers of ``hidden_dim`` units, then a linear head of ``out_dim``.

    ``out_dim=None`` leaves out the head (the result ends with an activation).
    ``out_init_scale`` rescales the head's initial weights (e.g. 0.01 for a policy mean,
    0.0 for a zero-initialised value head) and zeroes its bias.
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers.append(nn.Linear(dim, hidden_dim))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden_dim))
        layers.append(activation())
        dim = hidden_dim
    if out_dim is not None:
        head = nn.Linear(dim, out_dim)
        if out_init_scale is not None:
            with torch.no_grad():
                head.weight.mul_(out_init_scale)
                head.bias.zero_()
        layers.append(head)
    return nn.Sequential(*layers)
