"""Sums across the processes of one run (docs/design.md, "One run across processes").

A run launched with torchrun is W processes, each with a shard of the global batch. The
per-task gradients come from `torch.autograd.grad`, which DistributedDataParallel's hooks
never see, so the training step sums them itself: one flat all-reduce per dtype (in
practice one per step). Outside torch.distributed (or with one process) every function
here is the identity, so a single-process run runs exactly the code it always ran.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of processes of this run (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """The element-wise sums over the processes of `tensors`, in one flat collective per
    (dtype, device); None stays None. Every process must pass the same shapes, dtypes and
    None positions in the same order (a None is structural: a parameter that a task's loss
    does not reach, the same on every process). The inputs are left unchanged."""
    out = list(tensors)
    if world_size() == 1:
        return out
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(out):
        if t is not None:
            groups.setdefault((t.dtype, t.device), []).append(i)
    for indices in groups.values():
        flat = torch.cat([out[i].reshape(-1) for i in indices])
        dist.all_reduce(flat)
        offset = 0
        for i in indices:
            n = out[i].numel()
            out[i] = flat[offset:offset + n].view_as(out[i])
            offset += n
    return out


def global_losses(terms):
    """Each task's loss over the global batch from this process's (sum, count) terms.

    terms: one per task, either (sum, count) — the loss is Σ sum / Σ count over the processes,
    a masked mean normalised by the global number of valid pixels — or a scalar loss that
    counts as one mean per process (count 1).
    Returns (shares, values): shares[k] is this process's differentiable part of task k's
    loss (sum / global count), so the gradients summed over the processes are those of the
    global loss; values (K,) are the global losses, detached, the same on every process. With
    one process, shares[k] = sum / max(count, 1) as a single-process loss always was. One
    small collective (2K numbers) with several processes."""
    pairs = [term if isinstance(term, tuple | list) else (term, 1) for term in terms]
    if world_size() == 1:
        shares = [total / (count.clamp(min=1) if torch.is_tensor(count) else max(count, 1)) for total, count in pairs]
        return shares, torch.stack([s.detach() for s in shares])
    local = torch.stack([torch.stack([total.detach().double(), torch.as_tensor(count, device=total.device).double()])
                         for total, count in pairs])
    (summed,) = all_reduce_sum([local])
    counts = summed[:, 1].clamp(min=1)
    shares = [total / counts[k].to(total.dtype) for k, (total, _) in enumerate(pairs)]
    dtype = shares[0].dtype
    return shares, (summed[:, 0] / counts).to(dtype)
