"""Nash-MTL: Nash bargaining weights from the Gram matrix, in our own code (docs/methods.md, "Nash-MTL")."""
import torch

from .base import Option, WeightingMethod, gram64


def clip_factor(norm, max_norm):
    """torch.nn.utils.clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)); 1 when max_norm is 0 (off)."""
    return 1.0 if max_norm <= 0 else min(1.0, max_norm / (float(norm) + 1e-6))


def nash_weights(gram, start=None, max_iter=100, tol=1e-10, ridge=1e-8):
    """α > 0 with M α = 1/α (elementwise), and the number of Newton iterations taken.

    That equation is the stationarity condition of f(α) = ½ αᵀ M α − Σ_k log α_k, which
    is strictly convex on α > 0 (Hessian M + diag(1/α²)) and self-concordant, so damped
    Newton (step 1/(1+λ) while the Newton decrement λ > 1/4, full steps after) stays in
    α > 0 and converges from any start, however ill-conditioned M is. It runs on
    M̃ = M/‖M‖_F (α̃ = ‖M‖_F^½ α), so tolerances do not depend on the gradients' scale.
    The minimum exists iff no non-negative combination of the task gradients vanishes
    (anti-parallel gradients have one: α → ∞ with a zero update); ridge·I added to M̃
    keeps α finite there and barely moves it elsewhere. M = 0 (no gradient) gives α = 1.
    start: a previous α to warm-start from.
    """
    num_tasks = len(gram)
    scale = torch.linalg.matrix_norm(gram)
    if scale == 0:
        return torch.ones(num_tasks, dtype=gram.dtype), 0
    matrix = gram / scale + ridge * torch.eye(num_tasks, dtype=gram.dtype)
    alpha = torch.ones(num_tasks, dtype=gram.dtype) if start is None else start * scale.sqrt()
    iteration = 0
    while iteration < max_iter:
        gradient = matrix @ alpha - 1 / alpha
        step = -torch.linalg.solve(matrix + torch.diag(alpha**-2), gradient)
        decrement = (-(gradient @ step)).clamp(min=0).sqrt()
        if decrement <= tol:
            break
        alpha = alpha + (step if decrement <= 0.25 else step / (1 + decrement))
        iteration += 1
    return alpha / scale.sqrt(), iteration


class NashMTL(WeightingMethod):
    """Nash bargaining weights α: M α = 1/α, the update Σ_k α_k g_k (whose norm is then
    always √K: αᵀMα = Σ_k α_k (Mα)_k = K), as the official code and torchjd compute them
    (they solve a sequence of convex programs with cvxpy; we minimise f directly).
    max_norm > 0 (default 1, the official NashMTL's): the shared update is then scaled by
    torch's clip factor min(1, max_norm / (‖Σ_k α_k g_k‖ + 1e-6)), its norm √(αᵀMα) taken from
    the Gram matrix, as the official code's clip_grad_norm_ of the shared parameters after its
    backward: every task's contribution is scaled alike (so under AdaTask each task's moments
    get its share of the clipped update) and the heads keep α_k ∇L_k (`head_weights`).
    Each solve is warm-started from the previous α; with update_every > 1 the last α is
    reused in between, as in the official code. State: α and the step counter;
    `last_iterations` is the last solve's Newton iteration count.
    Per step: the Gram matrix; a K-variable Newton solve.
    """

    default_head_grads = "weighted"  # the published CityScapes code backpropagates Σ α_k L_k
    name = "nash_mtl"
    fidelity = "as the official NashMTL (shared update clipped to norm 1); our Newton solver instead of cvxpy"
    paper = "Navon et al. 2022, Multi-Task Learning as a Bargaining Game (ICML)"
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + a K-variable Newton solve"
    needs_grads = True
    OPTIONS = {
        "update_every": Option(int, 1, "solve for new weights every this many steps, reusing them in between"),
        "max_iter": Option(int, 100, "maximum Newton iterations per solve"),
        "tol": Option(float, 1e-10, "stop when the Newton decrement falls below tol"),
        "ridge": Option(float, 1e-8, "ridge added to M/‖M‖_F's diagonal: keeps α finite when the gradients cancel"),
        "max_norm": Option(float, 1.0, "clip the shared update Σ α_k g_k to this norm, as the official code "
                           "(torch's factor; 0 = off: the update keeps its norm √K)", legacy=0.0),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.alpha = None
        self.step = 0
        self.last_iterations = 0

    def weights(self, ctx):
        if self.alpha is None or self.step % self.update_every == 0:
            self.alpha, self.last_iterations = nash_weights(gram64(ctx), self.alpha, self.max_iter, self.tol, self.ridge)
        self.step += 1
        return self.alpha.to(ctx.gram)

    def mix(self, ctx):
        alpha = self.weights(ctx)
        factor = clip_factor(float(alpha.double() @ gram64(ctx) @ alpha.double()) ** 0.5, self.max_norm)
        return torch.diag(alpha * factor)

    def head_weights(self, mixing):
        """The heads get α_k ∇L_k: the official clip touches the shared parameters only."""
        return self.alpha.to(mixing)

    def state_dict(self):
        return {"alpha": None if self.alpha is None else self.alpha.clone(), "step": self.step}

    def load_state_dict(self, state):
        self.alpha = None if state["alpha"] is None else state["alpha"].clone()
        self.step = int(state["step"])
