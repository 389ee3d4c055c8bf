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
    with the reference protocol's Adam at lr 1e-4 (LibMTL's default lr too) the default lr
    below gives the same kind of update, without LibMTL's weight decay on s.

    hybrid=True is the IMTL-L+G hybrid (the paper's IMTL, LibMTL's `IMTL`): IMTL-G's weights
    α (summing to 1) are computed on the gradients of the *scaled* losses, e^{s_k} g_k, whose
    Gram matrix is diag(e^s) M diag(e^s) (torchjd's IMTLGWeighting, as the `imtl` method), and
    the update Σ α_k e^{s_k} g_k gives w = α ⊙ e^s. That instance needs gradients.
    Per step: the losses, one K-element Adam step; hybrid: + the Gram matrix and a K×K
    pseudo-inverse.
    """

    name = "imtl_l"
    fidelity = "matches LibMTL's objective (own Adam on s); `hybrid` = LibMTL's IMTL"
    paper = "Liu et al. 2021, Towards Impartial Multi-task Learning (ICLR)"
    needs = "losses (hybrid: gradients, Gram matrix)"
    cost = "one K-element Adam step (hybrid: + Gram matrix O(K²P) and a K×K pseudo-inverse)"
    OPTIONS = {
        "lr": Option(float, 1e-4, "learning rate of the Adam that trains the scales s "
                                  "(the paper/LibMTL: the network's optimizer, LibMTL's default lr 1e-4)"),
        "hybrid": Option(bool, False, "IMTL-L+G: IMTL-G's weights on the scaled gradients (needs gradients)"),
    }
    trained = "log_scales"

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        from torchjd.scalarization import IMTLL as TorchJDIMTLL  # lazy: see torchjd_gram.py
        self.scalarizer = TorchJDIMTLL(num_tasks).double()
        self.optimizer = torch.optim.Adam(self.scalarizer.parameters(), lr=self.lr)
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

    def after_step(self, ctx):
        losses = ctx.losses.detach().to("cpu", torch.float64)
        with torch.enable_grad():
            self.optimizer.zero_grad()
            self.scalarizer(losses).backward()
        self.optimizer.step()
