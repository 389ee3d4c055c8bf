"""PCGrad in per-task form, from the Gram matrix (docs/methods.md, "PCGrad")."""
import torch

from .base import Option, WeightingMethod, gram64


def random_orders(num_tasks, generator):
    """For each task i, the other tasks in a fresh random order."""
    return [[j for j in torch.randperm(num_tasks, generator=generator).tolist() if j != i]
            for i in range(num_tasks)]


def pcgrad_mixing(gram, orders):
    """Row i of A is task i's projected gradient g_i' = Σ_l A_il g_l.

    Start from g_i; for each j in orders[i], if ⟨g_i', g_j⟩ = (A M)_ij < 0, remove the
    projection of g_i' on the original g_j: A_ij −= (A M)_ij / M_jj. Only M is needed.
    Right after meeting g_j, ⟨g_i', g_j⟩ ≥ 0; a later projection may make it negative
    again when K > 2 (the paper's random order spreads that effect)."""
    mixing = torch.eye(len(gram), dtype=gram.dtype)
    for i, order in enumerate(orders):
        for j in order:
            dot = mixing[i] @ gram[:, j]
            if dot < 0 and gram[j, j] > 0:
                mixing[i, j] -= dot / gram[j, j]
    return mixing


class PCGrad(WeightingMethod):
    """Projected task gradients as a K×K mixing matrix, so an AdaTask optimizer gets each
    task's projected gradient as that task's contribution; the update is Σ_i g_i'.
    The random orders come from the method's own generator (checkpointed).
    Per step: the Gram matrix of the task gradients; O(K³) after it."""

    name = "pcgrad"
    fidelity = "matches (K = 2 equals torchjd)"
    paper = "Yu et al. 2020, Gradient Surgery for Multi-Task Learning (NeurIPS)"
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + O(K³)"
    needs_grads = True
    OPTIONS = {"seed": Option(int, 0, "seed of the method's own generator of the projection orders")}

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.generator = torch.Generator().manual_seed(self.seed)

    def mix(self, ctx):
        gram = gram64(ctx)
        return pcgrad_mixing(gram, random_orders(self.num_tasks, self.generator)).to(ctx.gram)

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
