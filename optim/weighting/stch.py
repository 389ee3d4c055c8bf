"""STCH: smooth Tchebycheff scalarisation (docs/methods.md, "STCH")."""
import torch

from .base import Option, WeightingMethod

EPS = 1e-20  # inside the logarithms, as in LibMTL's STCH


def stch_weights(losses, nadir, mu):
    """∂S/∂L_k of S = K μ log Σ_k exp(ℓ_k / μ) with ℓ_k = log(L_k / n_k + EPS) (n: the nadir
    vector): K softmax(ℓ/μ)_k · ∂ℓ_k/∂L_k = K p_k / (n_k (L_k / n_k + EPS)). float64 inputs."""
    log_losses = torch.log(losses / nadir + EPS)
    p = torch.softmax(log_losses / mu, dim=0)
    return len(losses) * p / (nadir * (losses / nadir + EPS))


def log_sum_weights(losses):
    """∂/∂L_k of the warm-up objective Σ_k log(L_k + EPS): 1 / (L_k + EPS)."""
    return 1.0 / (losses + EPS)


class STCH(WeightingMethod):
    """LibMTL's STCH for multi-task learning. Epochs 0 … W (W = warmup_epochs) descend
    Σ_k log(L_k + EPS); the per-step losses of epoch W are averaged into the nadir vector n;
    from epoch W + 1 the network descends S = K μ log Σ_k exp(log(L_k/n_k + EPS) / μ) (equal
    preferences; the ideal point is 0 in log-normalised loss space). The weights the network
    sees are ∂S/∂L_k at the detached losses (stch_weights). If the epoch chosen for the nadir
    had no step (a run resumed past it), the first epoch after W that has steps is collected
    instead, warm-up weights continuing through it.
    Per step: the losses; O(K) arithmetic."""

    name = "stch"
    fidelity = "as the authors' code (= LibMTL's)"
    paper = "Lin et al. 2024, Smooth Tchebycheff Scalarization for Multi-Objective Optimization (ICML)"
    needs = "losses"
    cost = "none"
    OPTIONS = {
        "mu": Option(float, 1.0, "smoothing μ (LibMTL's STCH_mu)"),
        "warmup_epochs": Option(int, 4, "epochs 0…W descend Σ log L_k; epoch W's mean losses are the nadir "
                                        "(LibMTL's STCH_warmup_epoch)"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if self.mu <= 0 or self.warmup_epochs < 0:
            raise ValueError(f"stch: mu must be > 0 and warmup_epochs ≥ 0, got {self.mu}, {self.warmup_epochs}")
        self.loss_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.count = 0
        self.nadir_epoch = None  # the epoch whose losses make the nadir vector

    @property
    def nadir(self):
        """The nadir vector n (mean per-step losses of the collected epoch), or None."""
        return self.loss_sum / self.count if self.count else None

    def weights(self, ctx):
        losses = ctx.losses.detach().to("cpu", torch.float64)
        if self.nadir_epoch is None or ctx.epoch <= self.nadir_epoch:
            return log_sum_weights(losses).to(ctx.losses)
        return stch_weights(losses, self.nadir, self.mu).to(ctx.losses)

    def after_step(self, ctx):
        if ctx.epoch >= self.warmup_epochs and self.nadir_epoch in (None, ctx.epoch):
            self.nadir_epoch = ctx.epoch
            self.loss_sum += ctx.losses.detach().to("cpu", torch.float64)
            self.count += 1

    def state_dict(self):
        return {"loss_sum": self.loss_sum.clone(), "count": self.count, "nadir_epoch": self.nadir_epoch}

    def load_state_dict(self, state):
        self.loss_sum = state["loss_sum"].clone()
        self.count = state["count"]
        self.nadir_epoch = state["nadir_epoch"]
