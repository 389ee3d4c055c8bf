"""EW: equal weights, the plain loss sum (docs/methods.md, "EW")."""
import torch

from .base import WeightingMethod


class EqualWeighting(WeightingMethod):
    """w = 1. Per step: the losses only; no extra cost (one backward of Σ L_k with a plain
    optimizer)."""

    name = "ew"
    fidelity = "matches (the sum of losses)"
    paper = "equal weights (the loss sum), the reference protocol's baseline"
    needs = "losses"
    cost = "none"

    def weights(self, ctx):
        return torch.ones_like(ctx.losses)
