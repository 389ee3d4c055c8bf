"""The state of a method that trains one tensor of its own with its own optimizer (UW, FAMO, IMTL-L)."""
from typing import Any

import torch

from .base import WeightingMethod


class SelfTrainedWeighting(WeightingMethod):
    """A method whose weights come from a float64 tensor it trains itself with `self.optimizer`.
    Its checkpoint state is {trained: the tensor, "optimizer": the optimizer's state}, in that
    order, so checkpoints of runs from before this class existed load unchanged."""

    trained: str  # the attribute holding the tensor, and its key in the state

    def state_dict(self) -> dict[str, Any]:
        return {self.trained: getattr(self, self.trained).detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            getattr(self, self.trained).copy_(state[self.trained])
        self.optimizer.load_state_dict(state["optimizer"])
