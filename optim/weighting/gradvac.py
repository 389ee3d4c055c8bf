"""GradVac: gradient vaccine (docs/methods.md, "GradVac")."""
import random

import torch

from .base import Option, gram64
from .pcgrad import python_rng_state, set_python_rng_state
from .torchjd_gram import TorchJDGramWeighting


def gradvac_coefficients(gram, targets, orders, beta, eps):
    """One GradVac step from the Gram matrix M, in place on the (K, K) cosine targets φ̂.

    Row i of the returned C is task i's corrected gradient g_i' = Σ_l C_il g_l. For each j in
    orders[i]: the cosine c = ⟨g_i', g_j⟩ / (‖g_i'‖‖g_j‖ + eps); if c < φ̂_ij, g_i' gains
    w g_j with w = ‖g_i'‖ (φ̂_ij √(1−c²) − c √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²) + eps), which
    raises the cosine to φ̂_ij; then φ̂_ij ← (1−β) φ̂_ij + β c, at every pair (LibMTL at
    4336804, and torchjd). All inner products come from M: ⟨g_i', g_j⟩ = (C M)_ij and
    ‖g_i'‖² = (C M Cᵀ)_ii."""
    coefficients = torch.eye(len(gram), dtype=gram.dtype)
    norms = gram.diagonal().clamp(min=0).sqrt()
    for i, order in enumerate(orders):
        row_gram = coefficients[i] @ gram  # ⟨g_i', g_l⟩ for every l
        for j in order:
            norm_i = (row_gram @ coefficients[i]).clamp(min=0).sqrt()
            cosine = row_gram[j] / (norm_i * norms[j] + eps)
            target = targets[i, j]
            if cosine < target:
                weight = norm_i * (target * (1 - cosine**2).clamp(min=0).sqrt()
                                   - cosine * (1 - target**2).clamp(min=0).sqrt()) \
                    / (norms[j] * (1 - target**2).clamp(min=0).sqrt() + eps)
                coefficients[i, j] += weight
                row_gram = row_gram + weight * gram[j]
            targets[i, j] = (1 - beta) * target + beta * cosine
    return coefficients


class GradVac(TorchJDGramWeighting):
    """Gradient Vaccine: for each task i and each other task j in a random order, when the
    cosine of g_i' (the already corrected g_i) with g_j is below an EMA target φ̂_ij, add the
    multiple of g_j that raises it exactly to φ̂_ij; φ̂_ij ← (1−β)φ̂_ij + β·cosine at every
    pair (gradvac_coefficients). The update is Σ_i g_i', reported as weights on the original
    gradients (w_k = Σ_i C_ik, contributions w_k g_k). The targets are over all shared
    parameters together (LibMTL's group_type 0, whole model).

    The orders come from the method's own RNG, seeded by `seed` and checkpointed with φ̂, so
    the global RNG is left alone and a resumed run draws the same orders. shuffle "python"
    (LibMTL's): for each i, random.shuffle of the other tasks by a random.Random(seed), the
    orders LibMTL draws after random.seed(seed); ours computes the step from the Gram matrix.
    "torch" (before issue 24): torchjd's GradVacWeighting, whose torch.randperm orders come
    from a torch RNG state seeded by `seed`.
    Per step: the Gram matrix; O(K³) after it."""

    name = "gradvac"
    fidelity = "matches LibMTL (4336804): φ̂ updated at every pair"
    paper = ("Wang et al. 2021, Gradient Vaccine: Investigating and Improving Multi-task "
             "Optimization in Massively Multilingual Models (ICLR)")
    cost = "Gram matrix O(K²P) + O(K³)"
    OPTIONS = {
        "beta": Option(float, 0.5, "EMA decay β of the cosine targets φ̂"),
        "eps": Option(float, 1e-8, "added to the denominators"),
        "seed": Option(int, 0, "seed of the method's own RNG for the task orders"),
        "shuffle": Option(str, "python", "'python': LibMTL's orders (random.shuffle of the other tasks); "
                          "'torch': torchjd's GradVacWeighting (torch.randperm orders)", ("python", "torch"),
                          legacy="torch"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.rng_state = torch.Generator().manual_seed(self.seed).get_state()
        self.python_rng = random.Random(self.seed)
        self.targets = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)

    def build(self):
        if self.shuffle == "python":
            return None
        from torchjd.aggregation import GradVacWeighting  # lazy: see torchjd_gram.py
        return GradVacWeighting(beta=self.beta, eps=self.eps)

    def weights(self, ctx):
        gram = gram64(ctx)
        if self.shuffle == "python":
            orders = []
            for i in range(self.num_tasks):
                others = [j for j in range(self.num_tasks) if j != i]
                self.python_rng.shuffle(others)
                orders.append(others)
            return gradvac_coefficients(gram, self.targets, orders, self.beta, self.eps).sum(0).to(ctx.gram)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            weights = self.torchjd_weighting(gram)
            self.rng_state = torch.get_rng_state()
        return weights.to(ctx.gram)

    def state_dict(self):
        if self.shuffle == "python":
            return {"python_rng": python_rng_state(self.python_rng), "phi": self.targets.clone()}
        phi = self.torchjd_weighting._phi_t
        return {"rng_state": self.rng_state.clone(), "phi": None if phi is None else phi.clone()}

    def load_state_dict(self, state):
        if self.shuffle == "python":
            set_python_rng_state(self.python_rng, state["python_rng"])
            self.targets = state["phi"].clone()
            return
        self.rng_state = state["rng_state"].clone()
        phi = state["phi"]
        weighting = self.torchjd_weighting
        weighting.reset()
        if phi is not None:
            weighting._phi_t = phi.clone()
            weighting._state_key = (phi.shape[0], phi.dtype)
