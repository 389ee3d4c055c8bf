"""The task losses of METHODS §1."""
import torch.nn.functional as F

from data.labels import VOID


def semantic_loss(log_probs, target):
    """NLL of the log-softmax output, ignoring void pixels; 0 (not NaN) when all are void."""
    total = F.nll_loss(log_probs, target, ignore_index=VOID, reduction="sum")
    return total / (target != VOID).sum().clamp(min=1)


def depth_loss(pred, target):
    """L1 over valid pixels (target != 0), divided by the number of valid pixels."""
    valid = target != 0
    return ((pred - target).abs() * valid).sum() / valid.sum().clamp(min=1)


LOSSES = {"semantic": semantic_loss, "depth": depth_loss}
