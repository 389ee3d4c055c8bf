"""SDMGrad (docs/methods.md, "SDMGrad"): by default the authors' CityScapes code
(OptMN-Lab/sdmgrad, methods/weight_methods.py and experiments/cityscapes/trainer.py); torchjd's
SDMGradWeighting under --sdmgrad-convention torchjd."""
import torch

from .base import Option, gram64
from .torchjd_gram import TorchJDGramWeighting

CONVENTIONS = ("published", "torchjd")
PUBLISHED_SCALE_EPS = 1e-4  # the authors' guard, under the square root of each M_kk


def project_on_simplex(v):
    """The Euclidean projection of v on {w ≥ 0, Σ w = 1}: sort, find the last index whose
    running threshold keeps the entry positive, shift and clip."""
    if bool((v >= 0).all()) and float(v.sum()) == 1.0:  # on the simplex already: kept as is
        return v
    ordered = torch.sort(v, descending=True).values
    excess = torch.cumsum(ordered, 0) - 1.0
    ranks = torch.arange(1, len(v) + 1, dtype=v.dtype)
    last = int(torch.nonzero(ordered * ranks > excess).max())
    return (v - excess[last] / (last + 1)).clamp(min=0.0)


class SDMGrad(TorchJDGramWeighting):
    """Direction-oriented MGDA: w on the simplex minimising ‖G(w + λ w̃)‖² (w̃ = 1/K), by
    n_iter projected SGD steps with momentum on a normalised M, warm-started from the
    previous step's w (checkpointed).

    convention "published" (the authors' code): M / (mean_k √(M_kk + 1e-4))², weights
    K (w + λ w̃)/(1 + λ) (their update is scaled by K "to match the sum loss"); "torchjd":
    torchjd's SDMGradWeighting, M / ((mean_k √M_kk)² + 1e-8), weights (w + λ w̃)/(1 + λ).
    max_norm > 0 clips the shared update Σ_k α_k g_k to that norm (‖·‖² = αᵀ M α), as the
    authors' backward clips the shared gradient; the factor scales every α_k alike.
    batches: the training loop draws batches − 1 extra batches per step (experiment/loop.py);
    M and the shared update come from the last one, the heads get the sum over all of them."""

    name = "sdmgrad"
    fidelity = ("the authors' CityScapes code: 3 batches a step (M and the shared update from the last, heads summed "
                "over the three), their M scale and ×K update, shared update clipped to norm 1; the inner solve "
                "in float64")
    paper = ("Xiao et al. 2023, Direction-oriented Multi-objective Learning: Simple and Provable "
             "Stochastic Algorithms (NeurIPS)")
    cost = "Gram matrix O(K²P) + n_iter projected steps on K×K; batches forward passes a step"
    OPTIONS = {
        "lamda": Option(float, 0.3, "pull λ towards the mean-gradient direction"),
        "n_iter": Option(int, 20, "inner projected-SGD steps per training step"),
        "lr": Option(float, 10.0, "inner SGD learning rate"),
        "momentum": Option(float, 0.5, "inner SGD momentum"),
        "batches": Option(int, 3, "batches a step: the main one and batches-1 extra ones from their own seeded "
                          "loader; M and the shared update come from the last, the heads get the sum over all "
                          "(the authors' CityScapes trainer: 3); 1: one batch for everything", legacy=1),
        "convention": Option(str, "published", "'published': the authors' M scale, mean √(M_kk+1e-4), and "
                             "update x K; 'torchjd': torchjd's scale, (mean √M_kk)²+1e-8, weights summing to 1",
                             CONVENTIONS, legacy="torchjd"),
        "max_norm": Option(float, 1.0, "clip the shared update to this norm (the authors' max_norm; 0: off)",
                           legacy=0.0),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if self.batches < 1:
            raise ValueError(f"--sdmgrad-batches {self.batches}: expected 1 or more")
        if self.max_norm < 0:
            raise ValueError(f"--sdmgrad-max-norm {self.max_norm}: expected 0 (off) or a positive norm")

    def build(self):
        from torchjd.aggregation import SDMGradWeighting  # lazy: see torchjd_gram.py
        return SDMGradWeighting(lr=self.lr, momentum=self.momentum, n_iter=self.n_iter, lambda_=self.lamda)

    def weights(self, ctx):
        gram = gram64(ctx)
        with torch.no_grad():
            alphas = self.torchjd_weighting(gram) if self.convention == "torchjd" else self._published(gram)
            if self.max_norm > 0:
                norm = max(float(alphas @ gram @ alphas), 0.0) ** 0.5
                alphas = alphas * min(1.0, self.max_norm / (norm + 1e-6))  # clip_grad_norm_'s factor
        return alphas.to(ctx.gram)

    def _published(self, gram):
        """The authors' solve on M (float64 here), warm-started from the stored w."""
        weighting, num_tasks = self.torchjd_weighting, len(gram)
        w = weighting._w
        if w is None or len(w) != num_tasks or w.dtype != gram.dtype:
            w = torch.full((num_tasks,), 1.0 / num_tasks, dtype=gram.dtype)
        scale = (gram.diagonal() + PUBLISHED_SCALE_EPS).sqrt().mean()
        a = gram / scale**2
        pull = self.lamda * a.mean(1)  # λ A w̃
        velocity = None
        for _ in range(self.n_iter):
            step = a @ w + pull
            velocity = step if velocity is None else self.momentum * velocity + step
            w = project_on_simplex(w - self.lr * velocity)
        weighting._w = w
        weighting._state_key = (num_tasks, w.dtype, w.device)
        return (num_tasks * w + self.lamda) / (1.0 + self.lamda)

    def state_dict(self):
        w = self.torchjd_weighting._w
        return {"w": None if w is None else w.clone()}

    def load_state_dict(self, state):
        weighting = self.torchjd_weighting
        weighting.reset()
        if state["w"] is not None:
            weighting._w = state["w"].clone()
            weighting._state_key = (len(weighting._w), weighting._w.dtype, weighting._w.device)
