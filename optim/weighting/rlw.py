"""RLW: random loss weighting (docs/methods.md, "RLW")."""
import torch

from .base import Option, WeightingMethod


def rlw_weights(draws):
    """softmax of the N(0, I) draws: positive, summing to 1 as in the paper."""
    return torch.softmax(draws, dim=0)


class RandomLossWeighting(WeightingMethod):
    """w = softmax(z), z ~ N(0, I) drawn afresh at every call of `weights` (once per step)
    from the method's own generator, so the run's other randomness is untouched and a
    checkpoint resumes the same sequence. Per step: the losses only; K normal draws."""

    name = "rlw"
    fidelity = "matches LibMTL (weights sum to 1)"
    paper = "Lin et al. 2022, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning (TMLR)"
    needs = "losses"
    cost = "K random draws"
    OPTIONS = {"seed": Option(int, 0, "seed of the method's own generator of the N(0, I) draws")}

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.generator = torch.Generator().manual_seed(self.seed)

    def weights(self, ctx):
        draws = torch.randn(self.num_tasks, generator=self.generator, dtype=torch.float64)
        return rlw_weights(draws).to(ctx.losses)

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
