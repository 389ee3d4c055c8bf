"""UPGrad through torchjd's UPGradWeighting (docs/methods.md, "UPGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class UPGrad(TorchJDGramWeighting):
    """The mean of the task gradients each projected onto the dual cone of all of them
    (K quadratic programs on M, quadprog), as torchjd's UPGradWeighting: its projector divides
    M by its trace, or zeroes it when the trace is below norm_eps (absolute), so gradients with
    Σ‖g_k‖² < 1e-4 get no projection: the plain mean.
    relative_guard (off by default): M is first divided by its mean diagonal
    (torchjd_gram.py), which makes norm_eps relative to the gradients' size; the weights
    are otherwise the same, as they do not depend on M's scale."""

    name = "upgrad"
    fidelity = "matches torchjd (absolute norm_eps; relative_guard makes it relative)"
    paper = "Quinton, Rey 2024, Jacobian Descent for Multi-Objective Optimization (arXiv:2406.16232)"
    cost = "Gram matrix O(K²P) + K quadratic programs on K×K"
    OPTIONS = {
        "norm_eps": Option(float, 1e-4, "the projector's guard: a Gram matrix whose trace is below norm_eps is zeroed "
                           "(torchjd's, absolute; with relative_guard the trace is taken of M divided by its mean "
                           "diagonal)"),
        "reg_eps": Option(float, 1e-4, "ridge added to the (trace-normalised) Gram matrix so the QP is strictly convex"),
        "relative_guard": Option(bool, False, "divide M by its mean diagonal first, so that small gradients are "
                                 "projected as large ones (ours; off: torchjd's absolute guard)", legacy=True),
    }

    @property
    def scale_free(self):
        return self.relative_guard

    def build(self):
        from torchjd.linalg import QuadprogProjector  # lazy: see torchjd_gram.py
        return self.torchjd_class()(projector=QuadprogProjector(norm_eps=self.norm_eps, reg_eps=self.reg_eps))

    def torchjd_class(self):
        from torchjd.aggregation import UPGradWeighting
        return UPGradWeighting
