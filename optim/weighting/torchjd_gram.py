"""Methods whose weights come from a K×K Gram-matrix weighting, most of them torchjd's (==0.18.0).

torchjd's aggregator for each of them is `weights(J Jᵀ) @ J` (GramianWeightedAggregator),
so the per-task contributions are w_k g_k: A = diag(w). The weights keep torchjd's scale
unless a method's `scale()` converts them to a published code's convention.

Each subclass imports torchjd in `build`, not at module top: torchjd pulls in cvxpy and
scipy (seconds), and the registry (--help, the CLI flags) must not pay that.
"""
import torch

from .base import WeightingMethod, gram64


class TorchJDGramWeighting(WeightingMethod):
    """Subclasses build their weighting (a callable M → w) from their options in `build`.
    Per step: the Gram matrix; the K×K solve (float64, CPU).

    scale_free (True: a subclass's choice, an option for UPGrad and DualProj): the weights do
    not depend on M's scale, but torchjd's guards are absolute (CAGrad's and UPGrad's norm_eps
    zero a Gram matrix whose trace is below 1e-4, so small gradients late in training silently
    get no update or no projection): M is then divided by its mean diagonal first, which makes
    the guards relative to the gradients' size."""

    needs = "gradients (Gram matrix)"
    needs_grads = True
    scale_free = False

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.torchjd_weighting = self.build()

    def build(self):
        raise NotImplementedError

    def scale(self):
        """The factor from the weights to the convention the options ask for (1: ours)."""
        return 1.0

    def weights(self, ctx):
        gram = gram64(ctx)
        if self.scale_free:
            mean_square = gram.diagonal().mean()
            if mean_square > 0:
                gram = gram / mean_square
        with torch.no_grad():
            return (self.torchjd_weighting(gram) * self.scale()).to(ctx.gram)
