"""FairGrad through torchjd's FairGradWeighting (docs/methods.md, "FairGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class FairGrad(TorchJDGramWeighting):
    """α-fair weights: w > 0 solving (M w)_k = w_k^(−1/α), found by scipy's bounded
    least_squares from w = 1/K (α = 0: w = 1/K, linear scalarisation)."""

    name = "fairgrad"
    fidelity = "matches LibMTL and the official code"
    paper = "Ban, Ji 2024, Fair Resource Allocation in Multi-Task Learning (ICML)"
    cost = "Gram matrix O(K²P) + a K-variable nonlinear least-squares solve"
    OPTIONS = {
        "alpha": Option(float, 1.0, "fairness α (0: equal weights, 1: proportional fairness)"),
        "max_iters": Option(int, 0, "least_squares evaluation budget; 0: scipy's default (100·K)"),
    }

    def build(self):
        from torchjd.aggregation import FairGradWeighting  # lazy: see torchjd_gram.py
        return FairGradWeighting(alpha=self.alpha, max_iters=self.max_iters or None)
