"""CAGrad through torchjd's CAGradWeighting (docs/methods.md, "CAGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class CAGrad(TorchJDGramWeighting):
    """The best worst-task improvement within a ball of radius c·‖g_0‖ around the mean
    gradient g_0 (torchjd solves it with cvxpy/Clarabel)."""

    name = "cagrad"
    paper = "Liu et al. 2021, Conflict-Averse Gradient Descent for Multi-task Learning (NeurIPS)"
    cost = "Gram matrix O(K²P) + a K-variable conic solve"
    OPTIONS = {
        "c": Option(float, 0.4, "radius scale c of the ball around the mean gradient"),
        "norm_eps": Option(float, 1e-4, "torchjd's guard against dividing by a vanishing norm"),
    }

    def build(self):
        from torchjd.aggregation import CAGradWeighting  # lazy: see torchjd_gram.py
        return CAGradWeighting(c=self.c, norm_eps=self.norm_eps)
