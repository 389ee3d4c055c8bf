"""GradVac through torchjd's GradVacWeighting (docs/methods.md, "GradVac")."""
import torch

from .base import Option, gram64
from .torchjd_gram import TorchJDGramWeighting


class GradVac(TorchJDGramWeighting):
    """Gradient Vaccine: for each task i and each other task j in a random order, when the
    cosine of g_i' (the already corrected g_i) with g_j is below an EMA target φ̂_ij, add the
    multiple of g_j that raises it exactly to φ̂_ij; φ̂_ij ← (1−β)φ̂_ij + β·cosine. The update
    is Σ_i g_i', reported as weights on the original gradients (w_k = Σ_i C_ik).

    torchjd draws the orders from the global RNG; here they come from the method's own RNG
    state (seeded by `seed`, checkpointed with φ̂), so the global RNG is left alone and a
    resumed run draws the same orders."""

    name = "gradvac"
    fidelity = "differs from LibMTL: φ̂ updated at every pair (torchjd), contributions w_k g_k"
    paper = ("Wang et al. 2021, Gradient Vaccine: Investigating and Improving Multi-task "
             "Optimization in Massively Multilingual Models (ICLR)")
    cost = "Gram matrix O(K²P) + O(K³)"
    OPTIONS = {
        "beta": Option(float, 0.5, "EMA decay β of the cosine targets φ̂"),
        "eps": Option(float, 1e-8, "added to the denominators"),
        "seed": Option(int, 0, "seed of the method's own RNG for the task orders"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.rng_state = torch.Generator().manual_seed(self.seed).get_state()

    def build(self):
        from torchjd.aggregation import GradVacWeighting  # lazy: see torchjd_gram.py
        return GradVacWeighting(beta=self.beta, eps=self.eps)

    def weights(self, ctx):
        gram = gram64(ctx)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            weights = self.torchjd_weighting(gram)
            self.rng_state = torch.get_rng_state()
        return weights.to(ctx.gram)

    def state_dict(self):
        phi = self.torchjd_weighting._phi_t
        return {"rng_state": self.rng_state.clone(), "phi": None if phi is None else phi.clone()}

    def load_state_dict(self, state):
        self.rng_state = state["rng_state"].clone()
        phi = state["phi"]
        weighting = self.torchjd_weighting
        weighting.reset()
        if phi is not None:
            weighting._phi_t = phi.clone()
            weighting._state_key = (phi.shape[0], phi.dtype)
