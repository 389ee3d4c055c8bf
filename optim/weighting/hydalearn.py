"""HydaLearn: per-batch weights from each task's gain on the main task (docs/methods.md, "HydaLearn")."""
import torch

from .base import Option, WeightingMethod, gram64


def lookahead_gains(losses_after, grads, main_task, eta, base_loss):
    """δ_k = L_main(θ) − L_main(θ − η g_k), measured on the same batch (one no_grad
    forward per task through losses_after)."""
    gains = []
    for task_grads in grads:
        delta = [None if g is None else -eta * g for g in task_grads]
        gains.append(base_loss - float(losses_after(delta)[main_task]))
    return torch.tensor(gains, dtype=torch.float64)


def first_order_gains(gram, main_task, eta):
    """δ_k ≈ η ⟨g_main, g_k⟩ = η M_main,k."""
    return eta * gram[main_task]


def hydalearn_weights(gains, main_task, normalise):
    """w_k ∝ max(δ_k, 0), with w_main = 1 ("main") or Σ w = K ("sum").
    Returns (weights, fell_back): δ_main ≤ 0 (a step along the main task's own gradient
    did not lower its loss) gives equal weights."""
    if gains[main_task] <= 0:
        return torch.ones_like(gains), True
    positive = gains.clamp(min=0)
    if normalise == "main":
        return positive / positive[main_task], False
    return len(gains) * positive / positive.sum(), False


class HydaLearn(WeightingMethod):
    """Weights follow each task's main-task gain on this batch: a task whose gradient step
    would lower the main task's loss gets weight in proportion; one that would raise it
    gets 0.

    gain="lookahead": one no_grad forward per task through ctx.losses_after (the loop
    restores parameters and BatchNorm buffers; see lookahead.losses_after_fn), and
    L_main(θ) is the batch's own loss (ctx.losses) unless recompute_base asks for one
    more forward at θ — it assumes the forward is deterministic (no dropout).
    gain="first_order": η M_main,k from the Gram matrix, no forward.

    eta default 1e-2, measured (SynthCity, SegNet-MTAN width 1, batch 8, float32, Adam
    1e-4 with equal weights): any tiny parameter change moves the losses by up to ~1e-4
    (max-pool/unpool index flips; float rounding alone is ~1e-7), so the gain must exceed
    that. From step ~300 on, η = 1e-2 gives a main-task gain of 5e-4..1e-2, within ~25% of
    the first-order value η‖g_main‖²; η = 1e-3 sinks into the floor late in training and
    η = 1e-1 is far from first order. (In the first steps, with ‖g‖² ~ 10, every η ≥ 1e-3
    is past the linear regime.) Gains of nearly orthogonal tasks stay below that floor at
    any η: gain="first_order" measures those without it. Retune for other models.

    `fallbacks` counts the steps that fell back to equal weights (in the state, for
    logging); `last_gains` holds this step's δ.
    Per step: the gradients, plus K forwards without backward (lookahead) or the Gram
    matrix only (first_order).
    """

    name = "hydalearn"
    fidelity = "no public code: our reading, options for the open choices"
    paper = "Verboven et al. 2023, HydaLearn: Highly Dynamic Task Weighting for Multitask Learning with Auxiliary Tasks (Applied Intelligence 53)"
    needs = "gradients + 1 look-ahead forward per task (gain=lookahead) or the Gram matrix (gain=first_order)"
    cost = "K forwards without backward (lookahead); O(K) (first_order)"
    needs_grads = True
    OPTIONS = {
        "main_task": Option(int, 0, "the main task, as its index in the model's task order (the CLI takes its name)"),
        "gain": Option(str, "lookahead", "main-task gain of a step along each task's gradient: measured "
                       "('lookahead') or η⟨g_main, g_k⟩ ('first_order')", ("lookahead", "first_order")),
        "eta": Option(float, 1e-2, "step size η of the look-ahead step θ − η g_k"),
        "normalise": Option(str, "main", "scale the weights so that w_main = 1 ('main') or Σ w = K ('sum')",
                            ("main", "sum")),
        "recompute_base": Option(bool, False, "lookahead: measure L_main(θ) with one more forward instead of "
                                 "taking the batch's loss"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if not 0 <= self.main_task < num_tasks:
            raise ValueError(f"hydalearn: main_task must be in 0..{num_tasks - 1}, got {self.main_task}")
        self.fallbacks = 0
        self.last_gains = None

    @property
    def needs_lookahead(self):
        return self.gain == "lookahead"

    def gains(self, ctx):
        if self.gain == "first_order":
            return first_order_gains(gram64(ctx), self.main_task, self.eta)
        if ctx.losses_after is None or ctx.grads is None:
            raise ValueError("hydalearn gain=lookahead needs StepContext.losses_after and grads")
        base = ctx.losses_after(None) if self.recompute_base else ctx.losses
        return lookahead_gains(ctx.losses_after, ctx.grads, self.main_task, self.eta, float(base[self.main_task]))

    def weights(self, ctx):
        self.last_gains = self.gains(ctx)
        weights, fell_back = hydalearn_weights(self.last_gains, self.main_task, self.normalise)
        self.fallbacks += int(fell_back)
        return weights.to(ctx.losses)

    def state_dict(self):
        return {"fallbacks": self.fallbacks}

    def load_state_dict(self, state):
        self.fallbacks = int(state["fallbacks"])
