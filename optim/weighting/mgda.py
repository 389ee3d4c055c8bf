"""MGDA-UB through torchjd's MGDAWeighting (docs/methods.md, "MGDA")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class MGDA(TorchJDGramWeighting):
    """The min-norm point of the convex hull of the task gradients (weights on the simplex),
    by Frank-Wolfe on M."""

    name = "mgda"
    paper = "Sener, Koltun 2018, Multi-Task Learning as Multi-Objective Optimization (NeurIPS)"
    cost = "Gram matrix O(K²P) + Frank-Wolfe on K×K"
    OPTIONS = {
        "epsilon": Option(float, 0.001, "stop Frank-Wolfe when its step γ falls below epsilon"),
        "max_iters": Option(int, 100, "maximum Frank-Wolfe iterations"),
    }

    def build(self):
        from torchjd.aggregation import MGDAWeighting  # lazy: see torchjd_gram.py
        return MGDAWeighting(epsilon=self.epsilon, max_iters=self.max_iters)
