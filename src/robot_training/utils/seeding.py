"""Seeding every random number generator a run uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int, torch_threads: int = 0) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy Generator for the run's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    return np.random.default_rng(seed)
