"""Methods whose weights come from a torchjd (==0.18.0) Gram-matrix weighting.

torchjd's aggregator for each of them is `weights(J Jᵀ) @ J` (GramianWeightedAggregator),
so the per-task contributions are w_k g_k: A = diag(w). The weights keep torchjd's scale.

Each subclass imports torchjd in `build`, not at module top: torchjd pulls in cvxpy and
scipy (seconds), and the registry (--help, the CLI flags) must not pay that.
"""
import torch

from .base import WeightingMethod, gram64


class TorchJDGramWeighting(WeightingMethod):
    """Subclasses build their torchjd weighting from their options in `build`.
    Per step: the Gram matrix; torchjd's K×K solve (float64, CPU)."""

    needs = "gradients (Gram matrix)"
    needs_grads = True

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.torchjd_weighting = self.build()

    def build(self):
        raise NotImplementedError

    def weights(self, ctx):
        with torch.no_grad():
            return self.torchjd_weighting(gram64(ctx)).to(ctx.gram)
