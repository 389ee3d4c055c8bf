"""CAGrad through torchjd's CAGradWeighting (docs/methods.md, "CAGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class CAGrad(TorchJDGramWeighting):
    """The best worst-task improvement within a ball of radius c·‖g_0‖ around the mean
    gradient g_0 (torchjd solves it with cvxpy/Clarabel), scaled by default as the authors' code
    (rescale=1 and its sum-loss factor K: × K/(1+c²)). The weights are scale-free: the
    Gram matrix is normalised first, so norm_eps is relative (torchjd_gram.py)."""

    name = "cagrad"
    fidelity = "as the authors' code (update × K/(1+c²)); torchjd's scale: `--cagrad-convention ours`; guard made relative"
    paper = "Liu et al. 2021, Conflict-Averse Gradient Descent for Multi-task Learning (NeurIPS)"
    cost = "Gram matrix O(K²P) + a K-variable conic solve"
    scale_free = True
    OPTIONS = {
        "c": Option(float, 0.4, "radius scale c of the ball around the mean gradient"),
        "norm_eps": Option(float, 1e-4, "torchjd's guard against a vanishing norm, relative to the mean "
                           "squared task-gradient norm"),
        "convention": Option(str, "published", "the update's scale: 'published' (the authors' code: torchjd's "
                             "x K/(1+c²)) or 'ours' (torchjd's, the mean-gradient scale)", ("ours", "published"),
                             legacy="ours"),
    }

    def build(self):
        from torchjd.aggregation import CAGradWeighting  # lazy: see torchjd_gram.py
        return CAGradWeighting(c=self.c, norm_eps=self.norm_eps)

    def scale(self):
        return self.num_tasks / (1 + self.c**2) if self.convention == "published" else 1.0
