"""MoCo: stochastic multi-objective gradient correction (docs/methods.md, "MoCo")."""
import torch

from .base import Contributions, Option, WeightingMethod, gram64, gram_matrix

NORM_EPS = 1e-8  # LibMTL's guard in g_k / (‖g_k‖ + ε) · L_k


def project_simplex(v):
    """The Euclidean projection of v onto the probability simplex {λ ≥ 0, Σ λ = 1}
    (sort-based, Held et al. 1974 / Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, 0) - 1
    index = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - cumulative / index > 0).max())
    return (v - cumulative[rho] / (rho + 1)).clamp(min=0)


class MoCo(WeightingMethod):
    """Tracked gradients y_k (init 0) and simplex weights λ (init 1/K), at step t = 1, 2, …:

      h_k = g_k / (‖g_k‖ + 1e-8) · L_k      (normalisation="loss", LibMTL/authors' code;
                                              "none": h_k = g_k, the paper's algorithm)
      y_k ← y_k − β_t (y_k − h_k),          β_t = β / t^β_sigma
      λ ← softmax(λ − γ_t (Y Yᵀ + ρI) λ),   γ_t = γ / t^γ_sigma  (lambda_map="softmax",
                                              LibMTL's; "projection": the paper's Proj_Δ(·))
      update = Σ_k λ_k y_k.

    ‖g_k‖ is taken over all shared parameters (√M_kk), as in LibMTL. The paper's optional
    projection of y_k onto a ball of radius L_k is not applied (nor in LibMTL). y holds the
    past, so the update is no mixing of this step's gradients: contribution k = λ_k y_k
    (mixes = False), which an AdaTask optimizer feeds into task k's moments.
    State: y (K × shared parameters, in the gradients' dtype and device; None where a task
    has never reached a parameter), λ and the step count t.
    Per step: K normalisations and one K×K product of y (O(K²P)); K extra copies of the
    shared gradients are held.
    """

    name = "moco"
    fidelity = "matches LibMTL (4336804); the paper's simplex projection: `--moco-lambda-map projection`"
    paper = ("Fernando et al. 2023, Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent "
             "Approach (ICLR)")
    needs = "gradients"
    cost = "Gram matrix O(K²P) + K×P tracked gradients (memory) + O(K²P)"
    needs_grads = True
    mixes = False
    OPTIONS = {
        "beta": Option(float, 0.5, "step size β of the tracked gradients y"),
        "beta_sigma": Option(float, 0.5, "decay: β_t = β / t^beta_sigma"),
        "gamma": Option(float, 0.1, "step size γ of the task weights λ"),
        "gamma_sigma": Option(float, 0.5, "decay: γ_t = γ / t^gamma_sigma"),
        "rho": Option(float, 0.0, "ℓ2 regularisation ρ of the λ update"),
        "normalisation": Option(str, "loss", "'loss': track g_k/‖g_k‖·L_k (LibMTL, the authors' code); "
                                "'none': track g_k (the paper's algorithm)", ("loss", "none")),
        "lambda_map": Option(str, "softmax", "'softmax': λ ← softmax (LibMTL); "
                             "'projection': λ ← Proj_simplex (the paper)", ("softmax", "projection")),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.tracked = None  # K lists aligned with the shared parameters
        self.lambdas = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        self.steps = 0

    def _targets(self, ctx):
        """The per-task vectors y tracks: the gradients, or LibMTL's g_k/(‖g_k‖+ε)·L_k."""
        if self.normalisation == "none":
            return ctx.grads
        norms = gram64(ctx).diagonal().clamp(min=0).sqrt()
        losses = ctx.losses.detach().to("cpu", torch.float64)
        scales = (losses / (norms + NORM_EPS)).tolist()
        return [[None if g is None else g * scale for g in task] for task, scale in zip(ctx.grads, scales)]

    def contributions(self, ctx):
        self.steps += 1
        beta = self.beta / self.steps**self.beta_sigma
        gamma = self.gamma / self.steps**self.gamma_sigma
        targets = self._targets(ctx)
        if self.tracked is None:
            self.tracked = [[None] * len(task) for task in targets]
        for k, task in enumerate(targets):
            for i, h in enumerate(task):
                y = self.tracked[k][i]
                if y is None and h is not None:
                    self.tracked[k][i] = beta * h
                elif y is not None:
                    self.tracked[k][i] = y - beta * (y if h is None else y - h)
        lambdas = self.lambdas - gamma * (gram_matrix(self.tracked).cpu() + self.rho * torch.eye(self.num_tasks,
                                                                                          dtype=torch.float64)) @ self.lambdas
        self.lambdas = torch.softmax(lambdas, 0) if self.lambda_map == "softmax" else project_simplex(lambdas)
        scales = self.lambdas.tolist()
        grads = [[None if y is None else scales[k] * y for y in task] for k, task in enumerate(self.tracked)]
        return Contributions(grads, None)

    def state_dict(self):
        tracked = None if self.tracked is None else [[None if y is None else y.clone() for y in task]
                                                     for task in self.tracked]
        return {"tracked": tracked, "lambdas": self.lambdas.clone(), "steps": self.steps}

    def load_state_dict(self, state):
        self.tracked = None if state["tracked"] is None else [list(task) for task in state["tracked"]]
        self.lambdas = state["lambdas"].clone()
        self.steps = state["steps"]
