"""Running mean and variance of observations, kept as buffers so they travel with the weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningNorm(nn.Module):
    """Normalises inputs by a running mean/variance (parallel Welford update), then clips."""

    def __init__(self, shape, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip
        self.eps = eps
        self._refresh()

    def _refresh(self) -> None:
        # float32 copies used in the forward pass (recomputed after every update / load)
        self._mean32 = self.mean.float()
        self._inv_std32 = (1.0 / torch.sqrt(self.var + self.eps)).float()

    @torch.no_grad()
    def update(self, batch) -> None:
        x = torch.as_tensor(np.asarray(batch), dtype=torch.float64, device=self.mean.device)
        x = x.reshape(-1, *self.mean.shape)
        n = x.shape[0]
        b_mean = x.mean(0)
        b_var = x.var(0, unbiased=False)
        delta = b_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + b_var * n + delta.pow(2) * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)
        self._refresh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean32.device != x.device:
            self._refresh()
        return ((x - self._mean32) * self._inv_std32).clamp(-self.clip, self.clip)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._refresh()
        return out
