"""Compute precision: ``float32``, or ``bfloat16`` autocast (weights stay float32).

bfloat16 matrix products run about twice as fast on CPUs with AVX512-BF16 or AMX and on
recent GPUs; elsewhere they may be slower. Losses and optimiser steps stay in float32.
``auto`` picks ``bfloat16`` where the hardware computes it natively (a CUDA device that
supports it, or a CPU with AVX512-BF16 / AMX-BF16) and ``float32`` everywhere else; given the
networks' width, it keeps ``float32`` below :data:`AUTO_BFLOAT16_MIN_WIDTH`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
AUTO_BFLOAT16_MIN_WIDTH = 256
"""Narrower networks stay float32 under ``auto``: their matrix products are too small for
bfloat16's faster kernels to pay for autocast's casts. One SAC update, float32 against
bfloat16, side by side on the 2-core AMX VM (2026-12-03, one thread, batch 256): 64 units
4.3 / 5.5 ms, 128 units 6.6 / 6.7 ms (Pendulum) and 8.4 / 8.0 ms (ugv), 256 units 14.7 / 9.8
ms, 512 units 37.5 / 20.4 ms (another job held the second core; the ratios are the figures)."""


def check_precision(precision: str, key: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.lru_cache(maxsize=None)
def cpu_has_native_bfloat16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def resolve_precision(precision: str, device, key: str = "precision", width: Optional[int] = None) -> str:
    """``auto`` → ``bfloat16`` or ``float32`` for ``device`` (and networks ``width`` units wide,
    where given); the others unchanged."""
    if check_precision(precision, key) != "auto":
        return precision
    if width is not None and width < AUTO_BFLOAT16_MIN_WIDTH:
        return "float32"
    kind = torch.device(device).type
    if kind == "cuda":
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if kind == "cpu":
        return "bfloat16" if cpu_has_native_bfloat16() else "float32"
    return "float32"


def autocast(device, precision: str, key: str = "precision", width: Optional[int] = None):
    """``torch.autocast`` to bfloat16 when asked for (or chosen by ``auto``), else a no-op context."""
    if resolve_precision(precision, device, key, width) == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
