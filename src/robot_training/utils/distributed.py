"""Data-parallel learners under ``torchrun``: process group, ranks, batch shards, DDP.

::

    torchrun --standalone --nproc-per-node 2 -m robot_training.train --mode world_model --data bags/

``train`` calls :func:`init` when torchrun's variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) are set: gloo on CPUs, NCCL on GPUs (rank
``r`` of a machine on ``cuda:LOCAL_RANK``). Without them nothing here does anything and every
learner runs the one-process code it always ran.

The global batch stays the configured one. Every rank draws the same global batch from the
same seeded generator and keeps its contiguous block of rows (:func:`batch_rows`,
:func:`shard`), so the ranks together compute exactly the batch a one-process run computes;
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients (:func:`parallel`).
Inside :func:`batch_shard`, noise for a tensor whose first axis is this rank's block of the
batch is drawn for the whole global batch and sliced (:func:`batch_noise`): each sample gets
the noise it gets in a one-process run and every rank's torch generator stays in step.
Rank 0 alone writes checkpoints, TensorBoard and progress bars (:func:`is_main`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

_BATCH_SHARD = [False]


class DistributedError(ValueError):
    """A setting the ranks cannot share (a batch that does not split), reported in one line."""


def launched() -> bool:
    """This process was started by torchrun (or another launcher setting its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    """A process group is up: the learners shard batches and wrap their models in DDP."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (torchrun's ``RANK`` before :func:`init`; 0 without torchrun)."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, TensorBoard and progress output."""
    return rank() == 0


def init(device: str) -> str:
    """Join torchrun's process group (gloo for ``cpu``, NCCL for ``cuda``); returns the device
    this rank trains on (``cuda:LOCAL_RANK`` on GPUs). Without torchrun: ``device`` unchanged."""
    if not launched() or active():
        return device
    if device.startswith("cuda"):
        device = f"cuda:{local_rank()}"
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")
    return device


def cleanup() -> None:
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def _tensor_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def local_batch_size(global_batch: int, key: str) -> int:
    """``global_batch / world size``; a batch the ranks cannot share equally is refused."""
    size = world_size()
    if global_batch % size:
        raise DistributedError(f"{key}: a global batch of {global_batch} does not split over {size} processes "
                          f"(each rank takes batch / world size); use a multiple of {size}")
    return global_batch // size


def batch_rows(global_batch: int) -> Optional[slice]:
    """This rank's contiguous rows of a global batch (None on one process: all of them)."""
    if not active():
        return None
    n = global_batch // world_size()
    return slice(rank() * n, (rank() + 1) * n)


def shard(indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous block of one global batch of sample indices, and a weight per row.

    A batch of ``m`` indices gives every rank ``ceil(m / world size)`` rows; a short last block
    is padded with copies of the first index of weight 0. Over an epoch's permutation cut into
    global batches, the ranks together take every sample once.
    """
    size, r = world_size(), rank()
    per = -(-len(indices) // size)
    mine = indices[r * per:(r + 1) * per]
    weight = torch.ones(per, device=indices.device)
    if len(mine) < per:
        weight[len(mine):] = 0.0
        mine = torch.cat([mine, indices[:1].expand(per - len(mine))])
    return mine, weight


class _Method(nn.Module):
    """``module.<method>`` as a forward, so DDP sees the loss computation as the forward pass."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.inner = module
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.inner, self.method)(*args, **kwargs)


def parallel(module: nn.Module, method: str = "forward") -> Callable[..., Any]:
    """``module.<method>`` on one process; under torchrun the same call through
    :class:`~torch.nn.parallel.DistributedDataParallel`, whose backward averages the
    gradients over the ranks (buffers are not broadcast: the learners keep them equal)."""
    if not active():
        return getattr(module, method)
    target = module if method == "forward" else _Method(module, method)
    device = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(target, device_ids=[device.index] if device.type == "cuda" else None,
                                               forward_sync_buffers=False)


@contextlib.contextmanager
def batch_shard():
    """Inside: tensors with a leading batch axis hold this rank's rows of the global batch
    (:func:`batch_noise` draws for the whole batch; :func:`gather` joins the ranks' values)."""
    before = _BATCH_SHARD[0]
    _BATCH_SHARD[0] = active()
    try:
        yield
    finally:
        _BATCH_SHARD[0] = before


def batch_noise(draw: Callable[..., torch.Tensor], shape, **options) -> torch.Tensor:
    """``draw(shape, **options)`` (``torch.rand``, ``torch.randn``); inside :func:`batch_shard`
    drawn for the global batch (first axis × world size) and cut to this rank's rows."""
    if not _BATCH_SHARD[0]:
        return draw(shape, **options)
    n = shape[0]
    full = draw((n * world_size(), *shape[1:]), **options)
    return full[rank() * n:(rank() + 1) * n]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Inside :func:`batch_shard`: the ranks' equal-sized 1-D tensors concatenated (for batch
    statistics such as percentiles); otherwise ``tensor`` itself."""
    if not _BATCH_SHARD[0]:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def mean(value: float) -> float:
    """The mean over the ranks of a float (a logged loss); ``value`` on one process."""
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on one (a stop every rank agrees on)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=_tensor_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a resolved ``--resume`` path, say)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
