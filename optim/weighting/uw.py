"""UW: uncertainty weighting (docs/methods.md, "UW")."""
import torch

from .base import Option
from .self_trained import SelfTrainedWeighting


def uw_objective(log_vars, losses):
    """Σ ½(e^{−s_k} L_k + s_k); its gradient in s_k is ½(1 − e^{−s_k} L_k)."""
    return 0.5 * (torch.exp(-log_vars) * losses + log_vars).sum()


class UncertaintyWeighting(SelfTrainedWeighting):
    """w_k = ½ e^{−s_k} with learnable log-variances s (init 0, float64, on the CPU).

    The network sees w detached: the s_k terms of the objective are constant in the
    network's parameters, so its gradient of Σ ½(e^{−s_k} L_k + s_k) is exactly Σ w_k ∇L_k.
    s is trained by its own Adam on that objective with this step's detached losses, in
    `after_step`, so it moves from the same losses the network stepped on.
    Per step: the losses only; one K-element Adam step.
    """

    name = "uw"
    fidelity = "matches; s is not on the network's StepLR (FAMO's trainer halves it)"
    paper = "Kendall, Gal, Cipolla 2018, Multi-Task Learning Using Uncertainty to Weigh Losses (CVPR)"
    needs = "losses"
    cost = "one K-element Adam step"
    OPTIONS = {"lr": Option(float, 0.025, "learning rate of the Adam that trains the log-variances s")}
    trained = "log_vars"

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.log_vars = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_vars], lr=self.lr)

    def weights(self, ctx):
        return (0.5 * torch.exp(-self.log_vars)).detach().to(ctx.losses)

    def after_step(self, ctx):
        losses = ctx.losses.detach().to("cpu", torch.float64)
        with torch.enable_grad():
            self.optimizer.zero_grad()
            uw_objective(self.log_vars, losses).backward()
        self.optimizer.step()
