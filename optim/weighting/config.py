"""ConFIG: conflict-free inverse gradients, through torchjd's ConFIG (docs/methods.md, "ConFIG")."""
import torch

from .base import Contributions, Option, WeightingMethod, flat_gradients, unflatten


def parse_pref_vector(text, num_tasks):
    """'' → None (equal weights 1); else K comma-separated floats."""
    if not text.strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"config: option pref_vector {text!r}: expected {num_tasks} comma-separated numbers") from None
    if len(values) != num_tasks:
        raise ValueError(f"config: option pref_vector needs {num_tasks} values, got {len(values)}")
    return torch.tensor(values)


def split_update(update, gradients):
    """Contribution k = (g_k·v) v / ‖v‖², the projection of g_k on v. ConFIG's length is
    Σ_j g_j·v̂, so these sum to v exactly (zero when v = 0); contribution k is task k's own
    share of the common direction."""
    squared = update.double().pow(2).sum()
    if squared == 0:
        return torch.zeros_like(gradients)
    coefficients = (gradients.double() @ update.double()) / squared
    return coefficients.to(update.dtype)[:, None] * update[None, :]


class ConFIG(WeightingMethod):
    """v = (Σ_k g_k·û) û with û the unit vector along pinv(U) w, U the unit task gradients
    (rows) and w the preference vector (default 1): v has equal cosines with every g_k
    when they are linearly independent. torchjd's `ConFIG` aggregator computes v on the
    (K, P) matrix of all shared gradients, in their dtype.

    Per-task contributions: the projection of each g_k on v, c_k = (g_k·v) v / ‖v‖², which
    sums to v exactly (ConFIG's length is the sum of those projections), keeps each task's
    share of the update along the common direction, and needs no guard beyond v = 0. An
    AdaTask optimizer so sees in task k's moments how much task k pushes along v.
    The split is no K×K mixing of this step's gradients (mixes = False).
    Per step: the (K, P) matrix copy and its pseudo-inverse (an SVD, O(K²P)).
    """

    name = "config"
    # Reference: the authors' ConFIG_update (tum-pbs/ConFIG), whose lstsq gives the same minimum-norm
    # direction as torchjd's pinv up to rounding; their code updates one parameter vector and
    # knows no heads (ours: each head its own ∇L_k).
    fidelity = "matches the authors' code (tum-pbs/ConFIG) and torchjd up to rounding; heads own ∇L_k"
    paper = "Liu et al. 2025, ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks (ICLR)"
    needs = "gradients"
    cost = "a (K, P) copy of the gradients + its pseudo-inverse O(K²P)"
    needs_grads = True
    mixes = False
    OPTIONS = {
        "pref_vector": Option(str, "", "K comma-separated preference weights w of the direction pinv(U) w; "
                              "empty: equal weights (torchjd's and the authors' default)"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.preference = parse_pref_vector(self.pref_vector, num_tasks)
        self.aggregator = None

    def _aggregator(self):
        if self.aggregator is None:
            from torchjd.aggregation import ConFIG as TorchJDConFIG  # lazy: see torchjd_gram.py
            self.aggregator = TorchJDConFIG(pref_vector=self.preference)
        return self.aggregator

    def contributions(self, ctx):
        matrix, shapes = flat_gradients(ctx.grads)
        aggregator = self._aggregator()
        if aggregator.pref_vector is not None:
            aggregator.pref_vector = self.preference.to(matrix)
        with torch.no_grad():
            update = aggregator(matrix)
            return Contributions(unflatten(split_update(update, matrix), shapes), None)
