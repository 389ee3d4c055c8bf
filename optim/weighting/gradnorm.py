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
    """Learnable loss weights w (Σ w = K), A = diag(w).

    Per step, from the Gram matrix M: G_k = w_k ‖g_k‖ with ‖g_k‖ = √M_kk over *all* shared
    parameters (the paper takes the last shared layer only; LibMTL and we take them all), the
    inverse training rates r_k = (L_k/L_k(0)) / mean_j(L_j/L_j(0)) (a task with L_k(0) = 0
    counts as r-neutral, L_k/L_k(0) = 1), and the target mean_j(G_j)·r_k^α held constant;
    L_grad = Σ_k |G_k − target_k|. The step uses the current w; then, within the same call
    (the gradient norms exist only inside the step), the weights' parameters take one step of
    their own Adam (float64, CPU) on L_grad. So the weights a step uses come from the previous
    steps only, as in LibMTL, where loss_scale is stepped by the model's optimizer after its
    weights were read.

    The defaults are LibMTL's (LibMTL/weighting/GradNorm.py at 4336804 with its default
    optimizer, Adam lr 1e-4 weight_decay 1e-5, whose lr is the network's):
    parametrization "softmax": w = K·softmax(z), the logits z from 1 trained on L_grad;
    "direct" (before issue 24, the paper's form): w itself trained, clamped at 0 and
    renormalised to Σ w = K.
    rate_reference "first_epoch": the first epoch (epoch 0) trains with w = 1 and leaves w
    alone; L(0) is its mean training losses (LibMTL's train_loss_buffer[:, 0]); "first_step"
    (before issue 24): w trains from the first step and L(0) is that step's losses.
    trainer "network": LibMTL trains z with the network's optimizer; here z has an Adam of its
    own whose lr is the network optimizer's current lr (ctx.lr, so it follows the scheduler),
    with weight decay 1e-5 (LibMTL's default; our network's Adam has none). trainer "own"
    (before issue 24): an Adam at the constant --gradnorm-lr.
    State: the weights' parameter, L(0), the Adam state.
    Per step: the Gram matrix; O(K) after it.
    """

    name = "gradnorm"
    fidelity = "LibMTL's GradNorm; z on an Adam at the network's lr with LibMTL's weight decay"
    paper = ("Chen et al. 2018, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask "
             "Networks (ICML)")
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + one K-element Adam step"
    needs_grads = True
    OPTIONS = {
        "alpha": Option(float, 1.5, "asymmetry α: strength of the pull towards a common training rate"),
        "trainer": Option(str, "network", "what trains the weights: 'network' (LibMTL: an Adam at the network "
                          "optimizer's current lr) or 'own' (an Adam at --gradnorm-lr)", ("network", "own"),
                          legacy="own"),
        "lr": Option(float, 1e-4, "trainer 'own': learning rate of the Adam that trains the weights"),
        "weight_decay": Option(float, 1e-5, "weight decay of that Adam (LibMTL's default)", legacy=0.0),
        "parametrization": Option(str, "softmax", "'softmax': w = K·softmax(z) (LibMTL); 'direct': w trained, "
                                  "clamped and renormalised (the paper)", ("softmax", "direct"), legacy="direct"),
        "rate_reference": Option(str, "first_epoch", "'first_epoch': w = 1 through epoch 0, L(0) its mean losses "
                                 "(LibMTL); 'first_step': train from step 1, L(0) its losses",
                                 ("first_epoch", "first_step"), legacy="first_step"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        # LibMTL's loss_scale starts at 1 (w = K·softmax(1) = 1; the weight decay pulls z towards 0)
        self.parameter = torch.ones(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.parameter], lr=self.lr, weight_decay=self.weight_decay)
        self.initial_losses = None

    def current_weights(self):
        if self.parametrization == "softmax":
            return self.num_tasks * torch.softmax(self.parameter.detach(), 0)
        return self.parameter.detach().clone()

    def mix(self, ctx):
        if self.rate_reference == "first_epoch" and ctx.epoch == 0:
            # LibMTL: equal weights through the first epoch, whose mean losses become L(0) (a run
            # that never saw epoch 0 takes its first trained step's losses instead)
            return torch.eye(self.num_tasks, dtype=torch.float64).to(ctx.gram)
        current = self.current_weights()
        if self.trainer == "network":  # LibMTL: z is a parameter of the network's optimizer, on its schedule
            for group in self.optimizer.param_groups:
                group["lr"] = ctx.lr
        self._update(gram64(ctx), ctx.losses.detach().to("cpu", torch.float64))
        return torch.diag(current).to(ctx.gram)

    def end_epoch(self, epoch, mean_losses):
        if self.rate_reference == "first_epoch" and epoch == 0:
            self.initial_losses = mean_losses.detach().to("cpu", torch.float64).clone()

    def _update(self, gram, losses):
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        norms = gram.diagonal().clamp(min=0).sqrt()
        initial = self.initial_losses
        relative = torch.where(initial > 0, losses / initial.clamp(min=torch.finfo(initial.dtype).tiny), 1.0)
        ratios = relative / relative.mean()
        self.optimizer.zero_grad()
        if self.parametrization == "softmax":
            with torch.enable_grad():
                weights = self.num_tasks * torch.softmax(self.parameter, 0)
                scaled = weights * norms
                target = (scaled.mean() * ratios**self.alpha).detach()
                (scaled - target).abs().sum().backward()
            self.optimizer.step()
            return
        self.parameter.grad = gradnorm_gradient(self.parameter.detach(), norms, ratios, self.alpha)
        self.optimizer.step()
        with torch.no_grad():
            self.parameter.clamp_(min=0)
            total = self.parameter.sum()
            if total > 0:
                self.parameter.mul_(self.num_tasks / total)
            else:
                self.parameter.fill_(1.0)

    def state_dict(self):
        return {"weights": self.parameter.detach().clone(), "initial_losses": self.initial_losses,
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.parameter.copy_(state["weights"])
        self.initial_losses = state["initial_losses"]
        self.optimizer.load_state_dict(state["optimizer"])
