"""What a task is: the contract between the task registry and the rest of the code (docs/design.md, "Tasks").

A task declares its head's output channels, its loss, its metrics with their better
direction (Δm's signs come from there), how its target is read from a sample and follows
the augmentation, how its prediction and target are drawn, and its trivial predictor. The
dataset, the models, evaluation, Δm, baselines, aggregation and the CLI iterate the
registry (tasks/__init__.py) and never name a task.

This module imports no torch (it is only named in annotations): the registry and its
metadata (Metric, TaskSettings) serve the sweeps, which run without torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch

    from data.augment import Crop


class Metric(NamedTuple):
    """One reported metric: its key in metrics.jsonl, how it is shown, and its better direction.

    scale: shown value = stored value × scale (100 for fractions shown in percent).
    """

    key: str
    label: str
    higher_is_better: bool
    scale: float = 1.0
    digits: int = 4
    unit: str = ""

    @property
    def delta_m_sign(self) -> int:
        """−1 where higher is better, +1 where lower is: Δm is then lower-is-better."""
        return -1 if self.higher_is_better else +1


@dataclass(frozen=True)
class TaskSettings:
    """The run settings that tasks read (the --classes and --depth-rule flags)."""

    classes: int = 7
    depth_rule: str = "divide"


class TaskMeter:
    """Accumulates one task's metrics over a split; `compute` gives Python floats (or dicts
    of them, None where undefined: JSON has no NaN) keyed by metric name."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def sum_over_processes(self) -> None:
        """Under torchrun: replace the accumulated state by its sum over the processes
        (optim.distributed.all_reduce_sum), so that compute() gives the metrics of the whole
        split. Every process calls it, with its state in the same shapes."""
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        raise NotImplementedError


class TrivialPredictor:
    """A task's trivial predictor, the floor a trained model has to beat (evaluation/trivial.py):
    one prediction from the train split's targets alone, scored on val by the task's meter.
    One that learns nothing (`fits` False) is never shown the train split."""

    fits: bool = False

    def observe(self, target: torch.Tensor) -> None:
        """Take one train target, as Task.to_tensor gives it (no batch dimension)."""
        raise NotImplementedError

    def fitted(self, train_dir: Path) -> dict[str, Any]:
        """What was learned, as JSON values keyed by name; ValueError naming `train_dir`
        when its targets gave nothing to learn from."""
        return {}

    def describe(self) -> str:
        """The prediction in words, e.g. "class 1 everywhere"."""
        raise NotImplementedError

    def predict(self, target: torch.Tensor) -> torch.Tensor:
        """The prediction for a batch of targets, in the form the task's meter takes."""
        raise NotImplementedError


class Task:
    """Base class of a task. Subclasses set the class attributes and implement the methods
    that raise NotImplementedError; one instance serves one run (its `settings`).

    name: the --tasks name and the key of the task's target, loss and metrics.
    folders: the release subfolders a sample of this task needs (besides image/); a task
        whose target is derived from other arrays lists those.
    metrics: the reported metrics (the Δm ones), in display order.
    """

    name: str = ""
    metrics: tuple[Metric, ...] = ()

    def __init__(self, settings: TaskSettings | None = None):
        self.settings = settings or TaskSettings()

    # ---- data -----------------------------------------------------------------------

    def folders(self) -> tuple[str, ...]:
        """The release subfolders whose arrays `target` reads."""
        raise NotImplementedError

    def target(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The target of one sample, in its on-disk layout, from the sample's arrays keyed by
        folder name ("image" always among them)."""
        raise NotImplementedError

    def augment(self, target: np.ndarray, crop: Crop) -> np.ndarray:
        """The target under the reference zoom and flip; by default resampled by nearest
        neighbour (values, such as void labels, survive). Must not modify `target`."""
        return crop.nearest(target)

    def to_tensor(self, target: np.ndarray) -> torch.Tensor:
        """The target as the loss and the meter take it, without the batch dimension."""
        raise NotImplementedError

    # ---- model ----------------------------------------------------------------------

    def out_channels(self) -> int:
        raise NotImplementedError

    def activate(self, output: torch.Tensor) -> torch.Tensor:
        """The head's raw output → the prediction the loss and the meter take."""
        return output

    # ---- training and evaluation --------------------------------------------------------

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum, count): the loss is sum / count, a mean over the counted (valid) elements.
        Kept apart so that a run across processes divides by the global count
        (optim/distributed.py): each process's own count would weight its pixels differently.
        sum is in the prediction's dtype."""
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one batch: sum / count, 0 (not NaN) when nothing counts."""
        total, count = self.loss_terms(pred, target)
        return total / count.clamp(min=1)

    def meter(self, device: torch.device | str = "cpu") -> TaskMeter:
        raise NotImplementedError

    def trivial_predictor(self) -> TrivialPredictor:
        """A new, unfitted trivial predictor of this task (evaluation/trivial.py)."""
        raise NotImplementedError

    # ---- TensorBoard panels --------------------------------------------------------------

    def draw(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, true) (H, W, 3) uint8 RGB images of one sample (no batch dimension);
        the prediction shown only where its target counts."""
        raise NotImplementedError

    def key(self, height: int, width: int) -> np.ndarray | None:
        """An (height, width, 3) uint8 cell that explains the colours (a legend, a scale), or None."""
        return None
