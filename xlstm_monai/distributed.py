"""
Multi-process training under torchrun, wherever it runs: NCCL on ``cuda:LOCAL_RANK`` when GPUs are there, gloo on
CPU when they are not. The multi-GPU overlays call these, so one overlay runs unchanged on a laptop, a GPU node or
several nodes, and every rank takes the same decision (skip a step, stop a run) on the same step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_mean",
    "any_rank",
    "broadcast_from_rank0",
    "init_process_group",
    "is_distributed",
    "local_device",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def local_device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def init_process_group() -> str:
    """Join torchrun's process group (once): NCCL with GPUs, gloo without. Returns the backend."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_device())
        dist.init_process_group(backend=backend)
    return dist.get_backend()


def _collective_device() -> torch.device:
    return local_device() if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank (a single process: ``flag``)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_reduce_mean(values: Sequence[float]) -> list[float]:
    """The mean over ranks of each value (a single process: the values)."""
    if not is_distributed():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def broadcast_from_rank0(obj):
    """``obj`` as rank 0 has it, on every rank (pickled; for small results such as a data-check report)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
