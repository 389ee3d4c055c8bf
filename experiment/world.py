"""The processes of one run under torchrun (docs/design.md, "One run across processes").

`torchrun --nproc-per-node N main_cityscapes.py ...` starts N processes; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK) says which one this is. Rank 0 alone reads and
writes the run folder and talks to the user; it hands what it read to the others
(`from_main`). Each global batch of --batch-size samples, in the order one process would
use, is split into one contiguous shard per process (`ShardedBatches`); the last, short
batch may leave a process an empty shard, which it still runs, so that every process
issues the same collectives. Without torchrun the world is one process and nothing here
communicates.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler
from torch.utils.data import default_collate as collate_samples


class PeerFailed(Exception):
    """Rank 0 failed while the others waited for what it read; it reports why."""


@dataclass(frozen=True)
class World:
    """This process's place in its run: rank among size processes, and its GPU on the node
    (local_rank). SINGLE is a run of one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def from_main(self, build, share=True):
        """build() on rank 0, and its (picklable) result on every process (share=False: None
        on the others, for a result that stays with rank 0, such as a lock). If build fails
        on rank 0, rank 0 raises its exception and the others raise PeerFailed."""
        if self.size == 1:
            return build()
        if self.is_main:
            try:
                result = build()
            except BaseException as e:
                _broadcast(("failed", f"{type(e).__name__}: {e}"))
                raise
            _broadcast(("ok", result if share else None))
            return result
        status, value = _broadcast(None)
        if status == "failed":
            raise PeerFailed(f"rank 0 failed: {value}")
        return value

    def check_batches(self, batch_size, splits):
        """Refuse a global --batch-size that does not split evenly, or a split with fewer
        samples than processes (a process would never see a sample). splits: {name: length}."""
        if self.size == 1:
            return
        if batch_size % self.size:
            raise ValueError(f"--batch-size {batch_size}: the global batch is split across the {self.size} "
                             f"processes of this run; expected a multiple of {self.size}")
        for name, length in splits.items():
            if length < self.size:
                raise ValueError(f"the {name} split has {length} samples, fewer than the {self.size} processes "
                                 f"of this run")


SINGLE = World()


def _broadcast(value):
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def lost_a_peer(error: BaseException, world: World) -> bool:
    """Whether `error` is a collective of a run of several processes that failed because another
    process of the run is gone (killed, crashed): gloo and NCCL raise it as a RuntimeError."""
    text = str(error)
    return world.size > 1 and (isinstance(error, dist.DistError) or any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer")))


def from_env() -> World:
    """The world torchrun started this process in (RANK, WORLD_SIZE, LOCAL_RANK), or one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ["LOCAL_RANK"]))


def join(world: World, device_flag: str) -> None:
    """Joins the process group of a torchrun run: NCCL on CUDA, gloo on the CPU; under CUDA
    this process uses GPU LOCAL_RANK."""
    if world.size == 1:
        return
    on_gpu = device_flag != "cpu" and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", timeout=timedelta(minutes=30))


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def quiet_unless_main(world: World) -> None:
    """Ranks other than 0 print nothing (rank 0 speaks for the run); an unexpected traceback
    still reaches the terminal, marked with its rank."""
    if world.is_main:
        return
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    sys.stdout = sys.stderr = devnull

    def excepthook(kind, value, traceback):
        sys.stderr = sys.__stderr__
        print(f"[rank {world.rank}]", file=sys.stderr)
        sys.__excepthook__(kind, value, traceback)
    sys.excepthook = excepthook


def shard(indices, rank, size):
    """Rank's contiguous part of one global batch: the parts differ by at most one sample,
    the earlier ranks taking the smaller ones."""
    n = len(indices)
    return indices[rank * n // size:(rank + 1) * n // size]


class ShardedBatches(Sampler):
    """The batches of `order` (a sampler of dataset indices) of `batch_size` samples, as one
    process would form them, each cut down to this rank's shard. An empty shard is yielded
    as [] (collate_shard makes it None; the loop runs it as an empty batch)."""

    def __init__(self, order, batch_size, rank=0, size=1):
        self.order, self.batch_size, self.rank, self.size = order, batch_size, rank, size

    def __len__(self):
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        batch = []
        for index in self.order:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield shard(batch, self.rank, self.size)
                batch = []
        if batch:
            yield shard(batch, self.rank, self.size)


def collate_shard(samples):
    """default_collate, but None for an empty shard (which default_collate refuses)."""
    return collate_samples(samples) if samples else None


class ExtraBatches(Sampler):
    """SDMGrad's extra batches of one epoch (--sdmgrad-batches): for each of `steps` steps,
    `per_step` global batches, each `batch_size` distinct samples drawn afresh (the first batch
    of a newly shuffled loader, as the authors' `next(iter(train_aux_loader))`), from a
    generator seeded by `seed` alone, each cut to this rank's shard as ShardedBatches does.
    An item is (index, draw), draw = 1, 2, ... through the epoch, so that each extra sample gets
    an augmentation of its own (data/cityscapes.py)."""

    def __init__(self, length, batch_size, steps, per_step, seed, rank=0, size=1):
        self.length, self.batch_size, self.steps, self.per_step = length, batch_size, steps, per_step
        self.seed, self.rank, self.size = seed, rank, size

    def __len__(self):
        return self.steps * self.per_step

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        draw = 0
        for _ in range(len(self)):
            batch = []
            for index in torch.randperm(self.length, generator=generator)[:self.batch_size].tolist():
                draw += 1
                batch.append((index, draw))
            yield shard(batch, self.rank, self.size)
