"""Checkpoints: an explicit payload of tensors and plain values, written atomically,
read back with ``torch.load(..., weights_only=True)`` so that a file can never run code.

Every checkpoint is a dict::

    {
      "format": "robot_training.checkpoint", "format_version": 1,
      "library_version": "0.1.0", "created_unix": 1.7e9,
      "kind": "ppo" | "sac" | "bc" | "world_model" | "dreamer" | ...,
      "config": {...},                       # Config.to_dict()
      "interface_fingerprint": "sha256..." or None,
      ...                                    # whatever the algorithm declares it saves
    }

The layout on disk follows the seed: ``<checkpoint_dir>/<component>/checkpoints/<algorithm>/``
(see :func:`checkpoint_directory`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from robot_training import __version__
from robot_training.utils.files import atomic_write

FORMAT = "robot_training.checkpoint"
FORMAT_VERSION = 1

#: component → folder of the seed's layout
COMPONENT_DIRS = {
    "world_model": "world_models",
    "policy": "policies",
    "dreamer": "reinforcement_learning",
    "supervised": "supervised_learning",
}


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not a robot_training checkpoint."""


def checkpoint_directory(root: Union[str, os.PathLike], component: str, algorithm: str) -> Path:
    """``<root>/policies/checkpoints/ppo`` and the like (the seed's layout)."""
    if component not in COMPONENT_DIRS:
        raise ValueError(f"unknown component {component!r}; one of {sorted(COMPONENT_DIRS)}")
    return Path(root) / COMPONENT_DIRS[component] / "checkpoints" / algorithm


def save_checkpoint(
    path: Union[str, os.PathLike],
    kind: str,
    payload: Dict[str, Any],
    config: Optional[Dict[str, Any]] = None,
    interface_fingerprint: Optional[str] = None,
) -> Path:
    """Write ``payload`` plus metadata to ``path`` atomically (temp file, fsync, rename).

    Under torchrun only rank 0 writes; the other ranks return the path rank 0 writes."""
    from robot_training.utils.distributed import is_main

    path = Path(path)
    if not is_main():
        return path
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created_unix": time.time(),
        "kind": kind,
        "config": config,
        "interface_fingerprint": interface_fingerprint,
    }
    clash = set(data) & set(payload)
    if clash:
        raise ValueError(f"checkpoint payload uses reserved keys: {sorted(clash)}")
    data.update(payload)
    with atomic_write(path) as f:
        torch.save(data, f)
    return path


def load_checkpoint(
    path: Union[str, os.PathLike],
    kind: Union[str, tuple, None] = None,
    map_location: Union[str, torch.device] = "cpu",
) -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; check it is ours and of ``kind``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and not _looks_like_pickle(path):
            raise CheckpointError(f"{path}: not a readable checkpoint (neither a PyTorch file nor a pickle)") from None
        raise CheckpointError(_refusal(path, str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign bytes
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{_first_line(str(exc))})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a robot_training checkpoint (no '{FORMAT}' header)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer robot_training (format {data['format_version']}, "
            f"this is {FORMAT_VERSION})"
        )
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if data.get("kind") not in kinds:
            raise CheckpointError(
                f"{path}: is a '{data.get('kind')}' checkpoint, expected {' or '.join(kinds)}"
            )
    return data


def _refusal(path: Path, torch_message: str) -> str:
    """One line for a file the safe unpickler refused.

    PyTorch's own message advises retrying without the safe unpickler; that advice is never
    passed on: a checkpoint that needs it is not one this library wrote, and loading it could
    run arbitrary code. Only the name of what it tried to import is kept.
    """
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    what = f"it references {found.group(1)}" if found else "it is not a checkpoint of tensors and plain values"
    return (f"{path}: not a safe checkpoint, refused without running any of it ({what}; "
            f"robot_training checkpoints hold only tensors and plain values)")


def _looks_like_pickle(path: Path) -> bool:
    """A zip archive (torch.save) or a pickle of protocol 2 or later (PROTO opcode first)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def file_sha256(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- RNG state


def rng_state(np_generator: Optional[np.random.Generator] = None) -> Dict[str, Any]:
    """Python, NumPy (global and ``np_generator``) and torch RNG states as plain values."""
    state: Dict[str, Any] = {
        "python": _plain(random.getstate()),
        "numpy_global": _plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    if np_generator is not None:
        state["numpy_generator"] = _plain(np_generator.bit_generator.state)
    return state


def set_rng_state(state: Dict[str, Any], np_generator: Optional[np.random.Generator] = None) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    ng = dict(state["numpy_global"])
    ng["state"] = {"key": np.asarray(ng["state"]["key"], dtype=np.uint32), "pos": ng["state"]["pos"]}
    np.random.set_state(ng)
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    if np_generator is not None and "numpy_generator" in state:
        np_generator.bit_generator.state = state["numpy_generator"]


def _plain(x: Any) -> Any:
    """Tuples → lists, NumPy arrays → lists, NumPy scalars → Python scalars."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
