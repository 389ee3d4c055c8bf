"""FAMO: fast adaptive multitask optimization (docs/methods.md, "FAMO")."""
import torch

from .base import Option
from .self_trained import SelfTrainedWeighting

EPS = 1e-8  # keeps log L and 1/L finite; the official code's constant (task losses are ≥ 0 here)


def famo_weights(logits, losses):
    """The loss weights FAMO's step applies: it descends Σ_k z_k log L_k / c with
    z = softmax(ξ) and c = Σ_k z_k / L_k held constant, whose gradient is Σ_k w_k ∇L_k with
    w_k = (z_k / L_k) / Σ_j (z_j / L_j). They sum to 1, as in the paper."""
    scaled = torch.softmax(logits, dim=0) / (losses + EPS)
    return scaled / scaled.sum()


def famo_logit_gradient(logits, losses_before, losses_after):
    """∇_ξ zᵀδ with δ = log L(θ_t) − log L(θ_{t+1}) on the same batch: J_softmaxᵀ δ,
    i.e. z ⊙ (δ − zᵀδ). Descending it moves weight towards tasks whose log-loss fell least."""
    delta = torch.log(losses_before + EPS) - torch.log(losses_after + EPS)
    z = torch.softmax(logits, dim=0)
    return z * (delta - (z * delta).sum())


class FAMO(SelfTrainedWeighting):
    """Task logits ξ (init 0) give per-step loss weights w = famo_weights(ξ, L) (sum 1, as in
    the paper; the minimum losses of the paper are taken as 0, as in its official code).
    After the network's step, `after_step` evaluates the losses on the same batch at the
    new parameters (ctx.losses_after(None): one extra forward, no backward) and takes one
    Adam step on ξ along famo_logit_gradient with L2 weight decay γ — the official code's
    update; the paper writes it as the plain step ξ ← ξ − lr(∇ + γξ).
    Per step: the losses, plus 1 forward after the step; O(K) arithmetic."""

    name = "famo"
    fidelity = "as the authors' code; their trainer keeps the extra forward's BN statistics, ours restores them"
    paper = "Liu et al. 2023, FAMO: Fast Adaptive Multitask Optimization (NeurIPS)"
    needs = "losses + 1 forward after the step"
    cost = "1 extra forward (no backward) per step"
    needs_lookahead = True
    OPTIONS = {
        "gamma": Option(float, 0.01, "weight decay γ on the task logits"),
        "lr": Option(float, 0.025, "learning rate of the Adam that trains the task logits"),
    }
    trained = "logits"

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.logits = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.gamma)

    def _losses(self, losses):
        return losses.detach().to("cpu", torch.float64)

    def weights(self, ctx):
        return famo_weights(self.logits.detach(), self._losses(ctx.losses)).to(ctx.losses)

    def after_step(self, ctx):
        if ctx.losses_after is None:
            raise ValueError("famo needs the losses after the step: StepContext.losses_after is None")
        after = self._losses(ctx.losses_after(None))
        self.logits.grad = famo_logit_gradient(self.logits.detach(), self._losses(ctx.losses), after)
        self.optimizer.step()
