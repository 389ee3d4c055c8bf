"""UW: uncertainty weighting (docs/methods.md, "UW")."""
import torch

from .base import Option
from .self_trained import SelfTrainedWeighting

TRAINERS = ("network", "own")


def uw_objective(log_vars, losses):
    """Σ ½(e^{−s_k} L_k + s_k); its gradient in s_k is ½(1 − e^{−s_k} L_k)."""
    return 0.5 * (torch.exp(-log_vars) * losses + log_vars).sum()


class UncertaintyWeighting(SelfTrainedWeighting):
    """w_k = ½ e^{−s_k} with learnable log-variances s (float64, on the CPU), initialised to
    `init` (−0.5, LibMTL's; the paper's own code is not public).

    The network sees w detached: the s_k terms of the objective are constant in the
    network's parameters, so its gradient of Σ ½(e^{−s_k} L_k + s_k) is exactly Σ w_k ∇L_k.
    s takes one Adam step on that objective with this step's detached losses, in `after_step`,
    so it moves from the same losses the network stepped on, as one backward of the objective
    followed by one optimizer step does in LibMTL.

    trainer 'network' (LibMTL, where s is a parameter of the model and so of the network's
    optimizer): the Adam's lr is the network optimizer's current lr (ctx.lr, which follows the
    StepLR schedule), with Adam's betas (0.9, 0.999), eps 1e-8 and no weight decay, as the
    network's Adam here. Under AdaTask this is exact too: s_k gets task k's gradient alone, so
    AdaTask's per-task moments of s are a plain Adam's. trainer 'own': an Adam of its own at a
    constant `lr` (0.025, the Nash-MTL/FAMO trainers' --method-params-lr).
    Per step: the losses only; one K-element Adam step.
    """

    name = "uw"
    fidelity = "matches LibMTL (s from −0.5, the network's Adam and schedule); the Nash-MTL/FAMO trainers: `--uw-init 0 --uw-trainer own`"
    paper = "Kendall, Gal, Cipolla 2018, Multi-Task Learning Using Uncertainty to Weigh Losses (CVPR)"
    needs = "losses"
    cost = "one K-element Adam step"
    OPTIONS = {
        "lr": Option(float, 0.025, "trainer 'own': learning rate of the Adam that trains the log-variances s"),
        "init": Option(float, -0.5, "initial log-variance s_k (LibMTL's −0.5; the Nash-MTL/FAMO code: 0)", legacy=0.0),
        "trainer": Option(str, "network", "what trains s: 'network' (LibMTL: an Adam at the network optimizer's "
                          "current lr) or 'own' (an Adam at --uw-lr, the Nash-MTL/FAMO code)", TRAINERS, legacy="own"),
    }
    trained = "log_vars"

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.log_vars = torch.full((num_tasks,), self.init, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.log_vars], lr=self.lr)

    def weights(self, ctx):
        return (0.5 * torch.exp(-self.log_vars)).detach().to(ctx.losses)

    def after_step(self, ctx):
        if self.trainer == "network":
            for group in self.optimizer.param_groups:
                group["lr"] = float(ctx.lr)
        losses = ctx.losses.detach().to("cpu", torch.float64)
        with torch.enable_grad():
            self.optimizer.zero_grad()
            uw_objective(self.log_vars, losses).backward()
        self.optimizer.step()
