"""GradDrop: gradient sign dropout (docs/methods.md, "GradDrop")."""
import torch

from .base import Contributions, Option, WeightingMethod


def sign_purity(stacked, eps=0.0):
    """P = ½(1 + Σ_k g_k / (Σ_k |g_k| + eps)) per coordinate of the (K, n) stacked gradients.
    eps 1e-7 is LibMTL's (P = ½ where every task's gradient is 0); with eps 0 (torchjd) P is
    NaN there, so such a coordinate is dropped, and is 0 anyway."""
    return 0.5 * (1 + stacked.sum(0) / (stacked.abs().sum(0) + eps))


def keep_masks(stacked, purity, draws):
    """Task k keeps a coordinate when its sign is the one drawn: positive where P > U,
    negative where P < U (torchjd's GradDrop with f = identity)."""
    return ((purity > draws) & (stacked > 0)) | ((purity < draws) & (stacked < 0))


class GradDrop(WeightingMethod):
    """Per coordinate of the shared parameters: sign purity P = ½(1 + Σ g / Σ|g|), one
    uniform draw U; task k keeps its coordinate when it is positive and P > U, or negative
    and P < U; with leak ℓ its contribution is (ℓ + (1 − ℓ) M_k) ⊙ g_k. The sum of the
    contributions is torchjd's GradDrop aggregate (f = identity, leak ℓ for every task) on the
    same draws; the masks are not a K×K mixing (mixes = False).

    The draws come from the method's own CPU generator (`seed`, checkpointed): one
    torch.rand over all shared coordinates per step, in the gradients' dtype, in parameter
    order, exactly what torchjd draws from the global generator for the flattened matrix.
    purity_eps: LibMTL's 1e-7 in P's denominator (0: torchjd's P).
    The paper and LibMTL apply GradDrop to the gradients at the shared representation
    (LibMTL's `rep_grad`); here it applies to the shared parameters' gradients.
    Per step: K backward passes, one draw per shared coordinate; O(KP).
    """

    name = "graddrop"
    fidelity = "matches LibMTL (4336804) on the same gradients; LibMTL drops at the representation, here at the parameters"
    paper = "Chen et al. 2020, Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout (NeurIPS)"
    needs = "gradients"
    cost = "O(KP) masking + P uniform draws (CPU generator) per step"
    needs_grads = True
    mixes = False
    OPTIONS = {
        "leak": Option(float, 0.0, "leak ℓ ∈ [0, 1]: the share of each task's gradient kept regardless of sign"),
        "seed": Option(int, 0, "seed of the method's own generator of the sign draws"),
        "purity_eps": Option(float, 1e-7, "added to Σ|g_k| in the sign purity P (LibMTL's 1e-7; 0: torchjd's)",
                             legacy=0.0),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if not 0.0 <= self.leak <= 1.0:
            raise ValueError(f"graddrop: option leak must lie in [0, 1], got {self.leak}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def contributions(self, ctx):
        grads = ctx.grads
        present = [i for i, per_task in enumerate(zip(*grads)) if any(g is not None for g in per_task)]
        if not present:
            return Contributions([list(task) for task in grads], None)
        like = [next(g for g in (task[i] for task in grads) if g is not None) for i in present]
        sizes = [g.numel() for g in like]
        dtype, device = like[0].dtype, like[0].device
        draws = torch.rand(sum(sizes), generator=self.generator, dtype=dtype).to(device)
        out = [[None] * len(task) for task in grads]
        offset = 0
        for i, ref, size in zip(present, like, sizes):
            stacked = torch.stack([torch.zeros_like(ref) if task[i] is None else task[i] for task in grads])
            stacked = stacked.reshape(len(grads), -1).to(dtype)
            masks = keep_masks(stacked, sign_purity(stacked, self.purity_eps), draws[offset:offset + size])
            offset += size
            kept = (self.leak + (1 - self.leak) * masks.to(dtype)) * stacked
            for k, task in enumerate(grads):
                if task[i] is not None:
                    out[k][i] = kept[k].reshape(ref.shape)
        return Contributions(out, None)

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
