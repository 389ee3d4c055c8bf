"""FairGrad through torchjd's FairGradWeighting (docs/methods.md, "FairGrad")."""
import torch

from .base import Option, gram64
from .nash_mtl import clip_factor
from .torchjd_gram import TorchJDGramWeighting


class FairGrad(TorchJDGramWeighting):
    """α-fair weights: w > 0 solving (M w)_k = w_k^(−1/α), found by scipy's bounded
    least_squares from w = 1/K (α = 0: w = 1/K, linear scalarisation); torchjd's solve, the
    same as the authors' and LibMTL's.

    By default the shared update is the authors' (OptMN-Lab/fairgrad, FairGrad.overwrite_grad
    and backward): K Σ_k w_k g_k ("to match the sum loss", times_tasks), then clipped to norm
    max_norm = 1 with torch's factor (clip_grad_norm_ of the shared parameters), its norm
    K √(wᵀMw) taken from the Gram matrix; every task's contribution is scaled alike, and each
    head gets its own ∇L_k (the authors backpropagate each loss alone). LibMTL's FairGrad is
    `--fairgrad-times-tasks false --fairgrad-max-norm 0 --head-grads weighted` (Σ w_k L_k
    backpropagated); torchjd's the same with --head-grads own."""

    name = "fairgrad"
    fidelity = "matches the authors' code (K·Σ w g clipped to norm 1, heads own ∇L_k); LibMTL's and torchjd's " \
               "conventions are switches"
    paper = "Ban, Ji 2024, Fair Resource Allocation in Multi-Task Learning (ICML)"
    cost = "Gram matrix O(K²P) + a K-variable nonlinear least-squares solve"
    OPTIONS = {
        "alpha": Option(float, 1.0, "fairness α (0: equal weights, 1: proportional fairness)"),
        "max_iters": Option(int, 0, "least_squares evaluation budget; 0: scipy's default (100·K)"),
        "times_tasks": Option(bool, True, "multiply the shared update by K, as the authors' code (false: Σ w_k g_k, "
                              "LibMTL's and torchjd's)", legacy=False),
        "max_norm": Option(float, 1.0, "clip the shared update to this norm, as the authors' code (torch's factor; "
                           "0 = off, LibMTL's and torchjd's)", legacy=0.0),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.last_weights = None

    def build(self):
        from torchjd.aggregation import FairGradWeighting  # lazy: see torchjd_gram.py
        return FairGradWeighting(alpha=self.alpha, max_iters=self.max_iters or None)

    def mix(self, ctx):
        """diag(w) (the solve's weights, `weights`), times K with times_tasks, times the clip factor."""
        weights = self.weights(ctx) * (float(self.num_tasks) if self.times_tasks else 1.0)
        self.last_weights = weights
        if self.max_norm <= 0:
            return torch.diag(weights)
        w = weights.double()
        factor = clip_factor(max(float(w @ gram64(ctx) @ w), 0.0) ** 0.5, self.max_norm)
        return torch.diag(weights * factor)

    def head_weights(self, mixing):
        """--head-grads weighted: the heads get the weights (times K with times_tasks), not the clip,
        which the authors apply to the shared parameters only."""
        return self.last_weights.to(mixing)
