"""GradNorm: gradient normalisation (docs/methods.md, "GradNorm")."""
import torch

from .base import Option, WeightingMethod, gram64


def gradnorm_gradient(weights, norms, ratios, alpha):
    """∂L_grad/∂w of L_grad = Σ_k |G_k − target_k| with G_k = w_k ‖g_k‖ and the target
    target_k = mean_j(G_j) · r_k^α held constant: sign(G_k − target_k) · ‖g_k‖."""
    scaled = weights * norms
    target = scaled.mean() * ratios**alpha
    return torch.sign(scaled - target) * norms


class GradNorm(WeightingMethod):
    """Learnable loss weights w (init 1, Σ w = K), A = diag(w).

    Per step, from the Gram matrix M: G_k = w_k ‖g_k‖ with ‖g_k‖ = √M_kk over *all* shared
    parameters (the paper takes the last shared layer only; we have M already), the inverse
    training rates r_k = (L_k/L_k(0)) / mean_j(L_j/L_j(0)) with L(0) the losses of the first
    step (a task with L_k(0) = 0 counts as r-neutral, L_k/L_k(0) = 1), and the target
    mean_j(G_j)·r_k^α held constant. The step uses the current w; then,
    within the same call (the gradient norms exist only inside the step), w takes one step of
    its own Adam (float64, CPU) along ∂L_grad/∂w = sign(G_k − target_k)·‖g_k‖, is clamped at
    0 and renormalised to Σ w = K (as the paper). So the weights a step uses come from the
    previous steps only, as in LibMTL, where loss_scale is stepped by the model's optimizer
    after its weights were read.

    The optimizer: the paper steps w with the network's optimizer and learning rate; LibMTL
    trains softmax logits (w = K·softmax) with the network's Adam. We keep the paper's
    direct parametrisation and give w its own Adam (Adam makes the step size independent of
    the gradient norms' scale, which varies over orders of magnitude between models), with
    lr = 1e-4, the default network learning rate here and in LibMTL; it does not follow the
    network's scheduler. State: w, L(0), the Adam state.
    Per step: the Gram matrix; O(K) after it.
    """

    name = "gradnorm"
    fidelity = "differs from LibMTL: direct weights with own Adam from step 1, all shared parameters"
    paper = ("Chen et al. 2018, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask "
             "Networks (ICML)")
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + one K-element Adam step"
    needs_grads = True
    OPTIONS = {
        "alpha": Option(float, 1.5, "asymmetry α: strength of the pull towards a common training rate"),
        "lr": Option(float, 1e-4, "learning rate of the Adam that trains the weights w"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.loss_weights = torch.ones(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.loss_weights], lr=self.lr)
        self.initial_losses = None

    def mix(self, ctx):
        gram = gram64(ctx)
        current = self.loss_weights.detach().clone()
        self._update(gram, ctx.losses.detach().to("cpu", torch.float64))
        return torch.diag(current).to(ctx.gram)

    def _update(self, gram, losses):
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        norms = gram.diagonal().clamp(min=0).sqrt()
        initial = self.initial_losses
        relative = torch.where(initial > 0, losses / initial.clamp(min=torch.finfo(initial.dtype).tiny), 1.0)
        ratios = relative / relative.mean()
        self.loss_weights.grad = gradnorm_gradient(self.loss_weights.detach(), norms, ratios, self.alpha)
        self.optimizer.step()
        with torch.no_grad():
            self.loss_weights.clamp_(min=0)
            total = self.loss_weights.sum()
            if total > 0:
                self.loss_weights.mul_(self.num_tasks / total)
            else:
                self.loss_weights.fill_(1.0)

    def state_dict(self):
        return {"weights": self.loss_weights.detach().clone(), "initial_losses": self.initial_losses,
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.loss_weights.copy_(state["weights"])
        self.initial_losses = state["initial_losses"]
        self.optimizer.load_state_dict(state["optimizer"])
