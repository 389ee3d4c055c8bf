"""UPGrad through torchjd's UPGradWeighting (docs/methods.md, "UPGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class UPGrad(TorchJDGramWeighting):
    """The mean of the task gradients each projected onto the dual cone of all of them
    (K quadratic programs on M, quadprog). The weights are scale-free: the Gram matrix is
    normalised first, so norm_eps is relative (torchjd_gram.py)."""

    name = "upgrad"
    fidelity = "torchjd's, guard made relative"
    paper = "Quinton, Rey 2024, Jacobian Descent for Multi-Objective Optimization (arXiv:2406.16232)"
    cost = "Gram matrix O(K²P) + K quadratic programs on K×K"
    scale_free = True
    OPTIONS = {
        "norm_eps": Option(float, 1e-4, "the projector's guard against a vanishing Gram matrix, relative to the "
                           "mean squared task-gradient norm"),
        "reg_eps": Option(float, 1e-4, "ridge added to the (trace-normalised) Gram matrix so the QP is strictly convex"),
    }

    def build(self):
        from torchjd.linalg import QuadprogProjector  # lazy: see torchjd_gram.py
        return self.torchjd_class()(projector=QuadprogProjector(norm_eps=self.norm_eps, reg_eps=self.reg_eps))

    def torchjd_class(self):
        from torchjd.aggregation import UPGradWeighting
        return UPGradWeighting
