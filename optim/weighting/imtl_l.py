"""IMTL-L: learned loss scales, and the IMTL-L+G hybrid (docs/methods.md, "IMTL-L")."""
import torch

from .base import Option, gram64
from .self_trained import SelfTrainedWeighting


class IMTLL(SelfTrainedWeighting):
    """Objective Σ_k (e^{s_k} L_k − s_k) with learnable scales s (init 0, float64, on the CPU),
    held by torchjd's `scalarization.IMTLL` (an nn.Module whose `log_scale` parameter is s).

    The network sees w_k = e^{s_k} detached: the −s_k terms are constant in the network's
    parameters, so its gradient of the objective is exactly Σ w_k ∇L_k. s is trained by its own
    Adam on the objective at this step's detached losses, in `after_step`
    (∂/∂s_k = e^{s_k} L_k − 1). The paper and LibMTL put s in the network's optimizer instead;
    the default trainer "network" is an Adam whose lr is the network optimizer's current lr
    (ctx.lr, so it follows the scheduler), with LibMTL's default weight decay 1e-5; trainer
    "own" (before issue 24, with weight_decay 0): an Adam at the constant --imtl-l-lr.

    hybrid=True is the IMTL-L+G hybrid (the paper's IMTL, LibMTL's `IMTL`): IMTL-G's weights
    α (summing to 1) are computed on the gradients of the *scaled* losses, e^{s_k} g_k, whose
    Gram matrix is diag(e^s) M diag(e^s) (torchjd's IMTLGWeighting, as the `imtl` method), and
    the update Σ α_k e^{s_k} g_k gives w = α ⊙ e^s. That instance needs gradients. Its heads
    (--head-grads own) get e^{s_k} ∇L_k, the gradient of the task's scaled loss, as LibMTL's
    (heads "scaled"; "plain": ∇L_k, before issue 24); --head-grads weighted gives them
    α_k e^{s_k} ∇L_k.
    Per step: the losses, one K-element Adam step; hybrid: + the Gram matrix and a K×K
    pseudo-inverse.
    """

    name = "imtl_l"
    fidelity = "`hybrid` is LibMTL's IMTL; s on an Adam at the network's lr with LibMTL's weight decay; IMTL-L alone has no published code"
    paper = "Liu et al. 2021, Towards Impartial Multi-task Learning (ICLR)"
    needs = "losses (hybrid: gradients, Gram matrix)"
    cost = "one K-element Adam step (hybrid: + Gram matrix O(K²P) and a K×K pseudo-inverse)"
    OPTIONS = {
        "trainer": Option(str, "network", "what trains s: 'network' (LibMTL: an Adam at the network optimizer's "
                          "current lr) or 'own' (an Adam at --imtl-l-lr)", ("network", "own"), legacy="own"),
        "lr": Option(float, 1e-4, "trainer 'own': learning rate of the Adam that trains the scales s"),
        "weight_decay": Option(float, 1e-5, "weight decay of that Adam (LibMTL's default)", legacy=0.0),
        "hybrid": Option(bool, False, "IMTL-L+G: IMTL-G's weights on the scaled gradients (needs gradients)"),
        "heads": Option(str, "scaled", "hybrid with --head-grads own: task k's head gets e^{s_k} ∇L_k, the gradient "
                        "of its scaled loss (LibMTL), or 'plain' ∇L_k", ("scaled", "plain"), legacy="plain"),
    }
    trained = "log_scales"

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        from torchjd.scalarization import IMTLL as TorchJDIMTLL  # lazy: see torchjd_gram.py
        self.scalarizer = TorchJDIMTLL(num_tasks).double()
        self.optimizer = torch.optim.Adam(self.scalarizer.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.needs_grads = self.hybrid  # per instance: only the hybrid asks for gradients
        self.gradient_weighting = None
        if self.hybrid:
            from torchjd.aggregation import IMTLGWeighting
            self.gradient_weighting = IMTLGWeighting()

    @property
    def log_scales(self):
        """s, the learned log-scales (a float64 leaf on the CPU)."""
        return self.scalarizer.log_scale

    def weights(self, ctx):
        scales = torch.exp(self.log_scales.detach())
        if not self.hybrid:
            return scales.to(ctx.losses)
        scaled_gram = scales[:, None] * gram64(ctx) * scales[None, :]
        with torch.no_grad():
            alpha = self.gradient_weighting(scaled_gram)
        return (alpha * scales).to(ctx.gram)

    def head_factors(self, mixing):
        if self.hybrid and self.head_grads == "own" and self.heads == "scaled":
            return torch.exp(self.log_scales.detach())
        return super().head_factors(mixing)

    def after_step(self, ctx):
        if self.trainer == "network":  # LibMTL: s is a parameter of the network's optimizer, on its schedule
            for group in self.optimizer.param_groups:
                group["lr"] = ctx.lr
        losses = ctx.losses.detach().to("cpu", torch.float64)
        with torch.enable_grad():
            self.optimizer.zero_grad()
            self.scalarizer(losses).backward()
        self.optimizer.step()
