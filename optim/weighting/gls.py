"""GLS: geometric loss strategy (docs/methods.md, "GLS")."""
import torch

from .base import WeightingMethod

EPS = 1e-8  # losses below it count as EPS, so a task at zero loss gets a finite weight


def gls_weights(losses):
    """∂S/∂L_k = S / (K L_k) of S = (Π_k L_k)^{1/K}, from float64 losses, with each L_k
    clamped to at least EPS: at L_k = 0 the exact derivative is infinite for task k and
    (by 0·∞) undefined for the others; with the clamp every weight is finite and, for
    L_k ≥ EPS, exact."""
    if (losses < 0).any():
        raise ValueError(f"gls: the geometric mean needs non-negative losses, got {losses.tolist()}")
    clamped = losses.clamp(min=EPS)
    geometric_mean = torch.exp(torch.log(clamped).mean())
    return geometric_mean / (len(losses) * clamped)


class GLS(WeightingMethod):
    """The network descends S = (Π_k L_k)^{1/K}: its gradient is Σ_k w_k ∇L_k with
    w = gls_weights(L) at the detached losses, so one backward of Σ w_k L_k gives exactly ∇S.
    Per step: the losses; O(K) arithmetic."""

    name = "gls"
    fidelity = "matches LibMTL for losses ≥ 1e-8"
    paper = ("Chennupati et al. 2019, MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss "
             "Strategy for Multi-Task Learning (CVPR Workshops)")
    needs = "losses"
    cost = "none"

    def weights(self, ctx):
        return gls_weights(ctx.losses.detach().to("cpu", torch.float64)).to(ctx.losses)
