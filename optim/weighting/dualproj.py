"""DualProj through torchjd's DualProjWeighting (docs/methods.md, "DualProj")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class DualProj(TorchJDGramWeighting):
    """The mean of the task gradients projected onto the dual cone of all of them
    ({d : g_kᵀd ≥ 0 for every k}): one quadratic program on M (quadprog)."""

    name = "dualproj"
    fidelity = "torchjd's own method, guard made relative"
    paper = "Quinton, Rey 2024, Jacobian Descent for Multi-Objective Optimization (arXiv:2406.16232)"
    cost = "Gram matrix O(K²P) + one quadratic program on K×K"
    scale_free = True
    OPTIONS = {
        "norm_eps": Option(float, 1e-4, "the projector's guard against a vanishing Gram matrix, relative to the "
                           "mean squared task-gradient norm"),
        "reg_eps": Option(float, 1e-4, "ridge added to the (trace-normalised) Gram matrix so the QP is strictly convex"),
    }

    def build(self):
        from torchjd.aggregation import DualProjWeighting  # lazy: see torchjd_gram.py
        from torchjd.linalg import QuadprogProjector
        return DualProjWeighting(projector=QuadprogProjector(norm_eps=self.norm_eps, reg_eps=self.reg_eps))
