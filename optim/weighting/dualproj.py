"""DualProj through torchjd's DualProjWeighting (docs/methods.md, "DualProj")."""
from .upgrad import UPGrad


class DualProj(UPGrad):
    """The mean of the task gradients projected onto the dual cone of all of them
    ({d : g_kᵀd ≥ 0 for every k}): one quadratic program on M (quadprog). UPGrad's
    projector and options (relative_guard included); only the projected vector differs."""

    name = "dualproj"
    fidelity = "matches torchjd (absolute norm_eps; relative_guard makes it relative)"
    cost = "Gram matrix O(K²P) + one quadratic program on K×K"

    def torchjd_class(self):
        from torchjd.aggregation import DualProjWeighting  # lazy: see torchjd_gram.py
        return DualProjWeighting
