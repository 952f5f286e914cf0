"""Data parallelism on one node (DDP): joining the process group, sharding batches, rank-0-only writes.

Launch with torchrun (``torchrun --nproc-per-node N -m benchmark run ...``) or as N submitit/SLURM tasks;
a plain ``python -m benchmark`` is one process and none of this does anything.

Equivalence with one process is by construction, not by approximation:

* every rank walks the same seeded permutation and keeps rows ``rank::world`` of each global batch;
* every random draw of the data path (crop boxes, flips, jitter, blur, masking noise) goes through
  :func:`batch_uniform`, which draws for the whole global batch on every rank and keeps this rank's rows.
  The ranks' generators therefore consume exactly what a single process consumes, stay equal to each
  other and to it, and a sample gets the same view and mask whichever rank holds it;
* DDP averages gradients over equal micro-batches, which is the global batch's mean (fine-tuning's
  uneven last batch is weighted explicitly, see ``finetune.py``).

Random draws inside the network (fine-tuning's drop-path) are the exception: each rank draws them for its
own rows, so with drop_path > 0 a DDP run equals a single-process run in distribution, not bit for bit.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def cuda_index(self) -> int:
        """This rank's GPU: its local rank among the visible GPUs (one when the launcher shows each task one)."""
        return self.local_rank % torch.cuda.device_count()

    def rows(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch: positions rank, rank + world, ..."""
        return batch if self.world == 1 else batch[self.rank :: self.world]


_ranks = Ranks()
_global_batch: ContextVar[Optional[int]] = ContextVar("global_batch", default=None)


def current() -> Ranks:
    return _ranks


def launch_environment() -> Optional[Ranks]:
    """Rank, world size and local rank from torchrun's or SLURM's variables; None for one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun (or a launcher that mimics it)
        return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SUBMITIT_FOLDER" in os.environ:  # submitit tasks
        import submitit

        # sets MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK; every task keeps seeing the node's GPUs
        environment = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return Ranks(environment.rank, environment.world_size, environment.local_rank)
    return None


def join(device_type: str) -> Ranks:
    """Join the process group once (nccl on CUDA, gloo on CPU); a no-op in a single process."""
    global _ranks
    if _ranks.world > 1:
        return _ranks
    ranks = launch_environment()
    if ranks is None:
        return _ranks
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(ranks.cuda_index())
    # a long timeout: rank 0 may wait on another job's encoder lock (a whole pretraining) while the others wait on it
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world, timeout=timedelta(hours=2))
    _ranks = ranks
    return ranks


def leave() -> None:
    global _ranks
    if dist.is_initialized():
        dist.destroy_process_group()
    _ranks = Ranks()


def main_decides(value: bool) -> bool:
    """Rank 0's value of a flag, on every rank (e.g. "the cached encoder exists")."""
    if _ranks.world == 1:
        return value
    flag = [value]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (for logged losses; every rank gets the same number)."""
    if _ranks.world == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / _ranks.world


def total(tensor: torch.Tensor) -> torch.Tensor:
    if _ranks.world == 1:
        return tensor
    summed = tensor.detach().clone()
    dist.all_reduce(summed)
    return summed


def contiguous_share(count: int) -> slice:
    """This rank's contiguous block of ``count`` items (evaluation: order kept when gathered)."""
    per_rank = -(-count // _ranks.world)
    return slice(min(count, _ranks.rank * per_rank), min(count, (_ranks.rank + 1) * per_rank))


def _all_gather_uneven(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's tensor, in rank order; first dimensions may differ by rank. No gradient flows back."""
    sizes = [torch.zeros((), dtype=torch.int64, device=tensor.device) for _ in range(_ranks.world)]
    dist.all_gather(sizes, torch.tensor(len(tensor), device=tensor.device))
    longest = int(max(sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    blocks = [torch.empty_like(padded) for _ in range(_ranks.world)]
    dist.all_gather(blocks, padded)
    return [block[: int(size)] for block, size in zip(blocks, sizes)]


def gather_blocks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (rows may differ in number by rank)."""
    if _ranks.world == 1:
        return tensor
    return torch.cat(_all_gather_uneven(tensor))


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch rebuilt from every rank's :meth:`Ranks.rows` share, in global order (no gradient)."""
    if _ranks.world == 1:
        return tensor
    shares = _all_gather_uneven(tensor)
    merged = tensor.new_empty((sum(len(share) for share in shares), *tensor.shape[1:]))
    for rank, share in enumerate(shares):
        merged[rank :: _ranks.world] = share
    return merged


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the model when there are several ranks (BatchNorm synchronised on GPUs), else the model.

    Callers keep the unwrapped model for everything but the training forward (evaluation, EMA, export).
    """
    if _ranks.world == 1:
        return model
    if device.type == "cuda":  # SyncBatchNorm has GPU kernels only; on CPU each rank normalises its rows
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gradient_sync(model: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's all-reduce on accumulation micro-steps that are not the last one."""
    if enabled or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


@contextlib.contextmanager
def global_batch(size: int) -> Iterator[None]:
    """Within this block, :func:`batch_uniform` draws for ``size`` rows and returns this rank's."""
    token = _global_batch.set(size if _ranks.world > 1 else None)
    try:
        yield
    finally:
        _global_batch.reset(token)


def batch_uniform(
    shape: tuple[int, ...],
    device: torch.device,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Per-sample uniform draws (first dimension = this rank's rows), identical to a single process's."""
    size = _global_batch.get()
    if size is None:
        return torch.empty(shape, device=device).uniform_(low, high)
    drawn = torch.empty((size, *shape[1:]), device=device).uniform_(low, high)[_ranks.rank :: _ranks.world]
    if len(drawn) != shape[0]:
        raise RuntimeError(f"batch_uniform: {shape[0]} rows asked, this rank holds {len(drawn)} of {size}")
    return drawn
