"""PCGrad in per-task form, from the Gram matrix (docs/methods.md, "PCGrad")."""
import random

import torch

from .base import Option, WeightingMethod, gram64


def random_orders(num_tasks, generator):
    """For each task i, the other tasks in a fresh random order."""
    return [[j for j in torch.randperm(num_tasks, generator=generator).tolist() if j != i]
            for i in range(num_tasks)]


def python_orders(num_tasks, rng):
    """LibMTL's orders: for each task i, all K tasks (i itself included) shuffled by Python's
    random.shuffle with `rng` (a random.Random)."""
    orders = []
    for _ in range(num_tasks):
        order = list(range(num_tasks))
        rng.shuffle(order)
        orders.append(order)
    return orders


def pcgrad_mixing(gram, orders, eps=0.0):
    """Row i of A is task i's projected gradient g_i' = Σ_l A_il g_l.

    Start from g_i; for each j in orders[i], if ⟨g_i', g_j⟩ = (A M)_ij < 0, remove the
    projection of g_i' on the original g_j: A_ij −= (A M)_ij / (M_jj + eps). Only M is needed.
    eps 0 skips a g_j = 0 instead (no projection on nothing); LibMTL adds 1e-8.
    Right after meeting g_j, ⟨g_i', g_j⟩ ≥ 0; a later projection may make it negative
    again when K > 2 (the paper's random order spreads that effect)."""
    mixing = torch.eye(len(gram), dtype=gram.dtype)
    for i, order in enumerate(orders):
        for j in order:
            dot = mixing[i] @ gram[:, j]
            if dot < 0 and gram[j, j] + eps > 0:
                mixing[i, j] -= dot / (gram[j, j] + eps)
    return mixing


class PCGrad(WeightingMethod):
    """Projected task gradients as a K×K mixing matrix, so an AdaTask optimizer gets each
    task's projected gradient as that task's contribution; the update is Σ_i g_i'.
    The random orders come from the method's own generator (checkpointed): shuffle "python"
    (LibMTL's): for each task a random.shuffle of all K tasks by a random.Random(seed), the
    task itself included (a projection on g_i happens only if an earlier projection turned
    g_i' against g_i), the same orders as LibMTL after random.seed(seed); "torch" (before
    issue 24): the other tasks in a torch.randperm order of a torch.Generator(seed).
    Per step: the Gram matrix of the task gradients; O(K³) after it."""

    name = "pcgrad"
    fidelity = "matches LibMTL (4336804)"
    paper = "Yu et al. 2020, Gradient Surgery for Multi-Task Learning (NeurIPS)"
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + O(K³)"
    needs_grads = True
    OPTIONS = {
        "seed": Option(int, 0, "seed of the method's own generator of the projection orders"),
        "shuffle": Option(str, "python", "'python': LibMTL's orders (random.shuffle of all K tasks); 'torch': "
                          "torch.randperm of the other tasks", ("python", "torch"), legacy="torch"),
        "eps": Option(float, 1e-8, "added to ‖g_j‖² in the projection (LibMTL's 1e-8; 0: skip g_j = 0)",
                      legacy=0.0),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if self.shuffle == "python":
            self.generator = random.Random(self.seed)
        else:
            self.generator = torch.Generator().manual_seed(self.seed)

    def mix(self, ctx):
        gram = gram64(ctx)
        if self.shuffle == "python":
            orders = python_orders(self.num_tasks, self.generator)
        else:
            orders = random_orders(self.num_tasks, self.generator)
        return pcgrad_mixing(gram, orders, self.eps).to(ctx.gram)

    def state_dict(self):
        if self.shuffle == "python":
            return {"python_rng": python_rng_state(self.generator)}
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        if self.shuffle == "python":
            set_python_rng_state(self.generator, state["python_rng"])
        else:
            self.generator.set_state(state["generator"])


def python_rng_state(rng):
    """A random.Random's state as a tensor (torch.load(weights_only=True) reads it)."""
    version, internal, gauss = rng.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def set_python_rng_state(rng, state):
    rng.setstate((state["version"], tuple(int(x) for x in state["internal"]), state["gauss"]))
