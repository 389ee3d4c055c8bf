"""BatchNorm over the global batch of a run that spans processes (docs/design.md, "One run
across processes").

torch.nn.SyncBatchNorm refuses CPU tensors (torch 2.13), so neither a CPU test nor a gloo
run could use it. In training mode this BatchNorm2d shares each process's per-channel count,
mean and sum of squared deviations with torch.distributed.nn.functional.all_reduce (each
process fills its own row of a zero matrix, so the sum is a gather), whose backward sums the
gradients in turn. It combines them as Chan et al.'s parallel variance does, which keeps
float32 precise where a difference of raw moments would cancel, and normalises with the
global mean and biased variance. The running
statistics follow nn.BatchNorm2d's rule (momentum, or a cumulative mean when momentum is
None; the unbiased variance), so a checkpoint moves freely between single- and
multi-process runs. With one process, or in eval mode, it is nn.BatchNorm2d itself.
"""
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from optim.distributed import world_size

# torch 2.13 marks it deprecated in favour of _functional_collectives.all_reduce, which is
# private and has no backward; this one carries the gradients the statistics need.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_reduce is deprecated",
                        category=FutureWarning)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x):
        if not (self.training and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dtype = torch.promote_types(x.dtype, torch.float32)  # statistics at least in float32 (AMP)
        values = x.to(dtype)
        channels = x.shape[1]
        count = values.numel() // channels  # 0 for an empty shard: its row weighs nothing
        local_mean = values.sum((0, 2, 3)) / max(count, 1)
        local_m2 = (values - local_mean[None, :, None, None]).square().sum((0, 2, 3))
        row = torch.cat([local_mean.new_full((1,), float(count)), local_mean, local_m2])
        rows = torch.zeros(world_size(), row.numel(), dtype=dtype, device=x.device)
        rows = all_reduce(rows.index_copy(0, torch.tensor([dist.get_rank()], device=x.device), row[None]))
        counts, means, m2s = rows[:, :1], rows[:, 1:1 + channels], rows[:, 1 + channels:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / n
        self._update_running_stats(mean.detach(), var.detach(), n)
        y = (values - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight.to(dtype)[None, :, None, None] + self.bias.to(dtype)[None, :, None, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, n):
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / (n - 1).clamp(min=1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def synchronise_batchnorm(model: nn.Module) -> nn.Module:
    """Every nn.BatchNorm2d of `model` becomes a SyncedBatchNorm2d, in place: the same
    parameters, buffers and state_dict keys."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = SyncedBatchNorm2d
    return model

