"""SDMGrad through torchjd's SDMGradWeighting (docs/methods.md, "SDMGrad")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class SDMGrad(TorchJDGramWeighting):
    """Direction-oriented MGDA: w on the simplex minimising ‖G(w + λ w̃)‖² (w̃ = 1/K), by
    n_iter projected SGD steps with momentum on M / mean_k(√M_kk)², warm-started from the
    previous step's w (checkpointed); weights (w + λ w̃)/(1 + λ). M comes from one batch
    (the authors' CityScapes/NYU code), not from two independent batches (torchjd, LibMTL)."""

    name = "sdmgrad"
    fidelity = "one batch for the Gram matrix and the update (as the authors' CityScapes code); inner lr 10"
    paper = ("Xiao et al. 2023, Direction-oriented Multi-objective Learning: Simple and Provable "
             "Stochastic Algorithms (NeurIPS)")
    cost = "Gram matrix O(K²P) + n_iter projected steps on K×K"
    OPTIONS = {
        "lamda": Option(float, 0.3, "pull λ towards the mean-gradient direction"),
        "n_iter": Option(int, 20, "inner projected-SGD steps per training step"),
        "lr": Option(float, 10.0, "inner SGD learning rate"),
        "momentum": Option(float, 0.5, "inner SGD momentum"),
    }

    def build(self):
        from torchjd.aggregation import SDMGradWeighting  # lazy: see torchjd_gram.py
        return SDMGradWeighting(lr=self.lr, momentum=self.momentum, n_iter=self.n_iter, lambda_=self.lamda)

    def state_dict(self):
        w = self.torchjd_weighting._w
        return {"w": None if w is None else w.clone()}

    def load_state_dict(self, state):
        weighting = self.torchjd_weighting
        weighting.reset()
        if state["w"] is not None:
            weighting._w = state["w"].clone()
            weighting._state_key = (len(weighting._w), weighting._w.dtype, weighting._w.device)
