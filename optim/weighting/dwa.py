"""DWA: dynamic weight average (docs/methods.md, "DWA")."""
import torch

from .base import Option, WeightingMethod


def dwa_weights(last, before_last, temperature):
    """K·softmax(r/T) with r_k = L_k(e−1) / L_k(e−2), from epoch-mean training losses."""
    ratios = last / before_last
    return len(ratios) * torch.softmax(ratios / temperature, dim=0)


class DynamicWeightAverage(WeightingMethod):
    """Weights from how fast each task's training loss fell.

    mode 'epoch' (the MTAN authors' code, as LibMTL has it): r from the epoch-mean losses of
    the last two epochs, recorded by `end_epoch`; w = K·softmax(r/T), and w = 1 until two
    epochs have been recorded.
    mode 'iteration' (the Nash-MTL and FAMO code, which produced the published CityScapes DWA
    rows): every step appends its losses to a window of the last 2W steps (initially all 1);
    from step W + 2 on (counting from 1, as that code's counter does), r = mean of the last W / mean of the W before, and w = softmax(r/T),
    summing to 1 as that code's mean of the weighted losses does; 1/K before.
    Per step: nothing but the stored losses; no extra cost."""

    name = "dwa"
    fidelity = "as MTAN's code per epoch (= LibMTL); the Nash-MTL/FAMO rows: `--dwa-mode iteration`"
    paper = "Liu, Johns, Davison 2019, End-to-End Multi-Task Learning with Attention (CVPR)"
    needs = "losses (epoch or window means)"
    cost = "none"
    OPTIONS = {
        "temperature": Option(float, 2.0, "softmax temperature T"),
        "mode": Option(str, "epoch", "'epoch' (the paper, LibMTL) or 'iteration' (the Nash-MTL/FAMO code)",
                       ("epoch", "iteration"), legacy="epoch"),
        "window": Option(int, 25, "iteration mode: the window W of steps compared with the W before",
                         legacy=25),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if self.window < 1:
            raise ValueError(f"dwa: option window must be at least 1, got {self.window}")
        self.history = []  # epoch mode: epoch-mean losses of the last two epochs, oldest first
        self.recent = torch.ones(2 * self.window, num_tasks, dtype=torch.float64)  # iteration mode
        self.steps = 0
        self.current = torch.full((num_tasks,), 1 / num_tasks, dtype=torch.float64)

    def weights(self, ctx):
        if self.mode == "iteration":
            return self._iteration_weights(ctx.losses).to(ctx.losses)
        if len(self.history) < 2:
            return torch.ones_like(ctx.losses)
        return dwa_weights(self.history[1], self.history[0], self.temperature).to(ctx.losses)

    def _iteration_weights(self, losses):
        self.recent = torch.cat([self.recent[1:], losses.detach().to("cpu", torch.float64)[None]])
        if self.steps > self.window:
            ratios = self.recent[self.window:].mean(0) / self.recent[:self.window].mean(0)
            self.current = torch.softmax(ratios / self.temperature, dim=0)
        self.steps += 1
        return self.current

    def end_epoch(self, epoch, mean_losses):
        mean = torch.as_tensor(mean_losses, dtype=torch.float64).detach().cpu()
        self.history = (self.history + [mean])[-2:]

    def state_dict(self):
        return {"history": [h.clone() for h in self.history], "recent": self.recent.clone(), "steps": self.steps,
                "current": self.current.clone()}

    def load_state_dict(self, state):
        self.history = [h.clone() for h in state["history"]]
        if "recent" in state:  # checkpoints before the iteration mode hold the epoch history only
            self.recent, self.steps, self.current = state["recent"].clone(), state["steps"], state["current"].clone()
