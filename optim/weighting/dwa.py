"""DWA: dynamic weight average (docs/methods.md, "DWA")."""
import torch

from .base import Option, WeightingMethod


def dwa_weights(last, before_last, temperature):
    """K·softmax(r/T) with r_k = L_k(e−1) / L_k(e−2), from epoch-mean training losses."""
    ratios = last / before_last
    return len(ratios) * torch.softmax(ratios / temperature, dim=0)


class DynamicWeightAverage(WeightingMethod):
    """Weights from how fast each task's epoch-mean training loss fell over the last two
    epochs; w = 1 until two epochs have been recorded by `end_epoch` (epochs 0 and 1).
    Per step: nothing but the stored epoch means; no extra cost."""

    name = "dwa"
    paper = "Liu, Johns, Davison 2019, End-to-End Multi-Task Learning with Attention (CVPR)"
    needs = "losses (epoch means)"
    cost = "none"
    OPTIONS = {"temperature": Option(float, 2.0, "softmax temperature T")}

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.history = []  # epoch-mean losses of the last two epochs, oldest first

    def weights(self, ctx):
        if len(self.history) < 2:
            return torch.ones_like(ctx.losses)
        return dwa_weights(self.history[1], self.history[0], self.temperature).to(ctx.losses)

    def end_epoch(self, epoch, mean_losses):
        mean = torch.as_tensor(mean_losses, dtype=torch.float64).detach().cpu()
        self.history = (self.history + [mean])[-2:]

    def state_dict(self):
        return {"history": [h.clone() for h in self.history]}

    def load_state_dict(self, state):
        self.history = [h.clone() for h in state["history"]]
