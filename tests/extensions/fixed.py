"""A toy --weighting method for tests/test_extension.py: fixed weights from one option."""
import torch

from .base import Option, WeightingMethod


class FixedWeights(WeightingMethod):
    name = "fixed"
    paper = "a test's toy"
    cost = "none"
    OPTIONS = {"values": Option(str, "", "comma-separated weights, one per task; empty: 1 each")}

    def weights(self, ctx):
        if not self.values:
            return torch.ones(self.num_tasks)
        return torch.tensor([float(v) for v in self.values.split(",")])
