"""One training step's life cycle, in one place (docs/design.md, "Training step").

The engine runs the forward and the losses, refuses a non-finite loss, builds the step's
StepContext (with the look-ahead only for a method that needs one), has MultiTaskStep
update the parameters, calls the method's hooks (after_step after every step, end_epoch
with the epoch's mean losses) and names the diagnostics after the tasks. The training loop
only feeds it batches.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from .distributed import global_losses
from .multitask_step import MultiTaskStep
from .weighting.base import StepContext, WeightingMethod
from .weighting.lookahead import losses_after_fn

# compute_losses(batch) → (predictions, K loss terms), one per task in the model's order; a term
# is (sum, count), the loss being sum / count, or a scalar loss (see distributed.global_losses)
ComputeLosses = Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[Any]]]


class NonFinite(RuntimeError):
    """A loss, a weight or a metric became NaN or infinite: the run diverged."""


class StepResult(NamedTuple):
    preds: list[torch.Tensor]  # detached
    losses: list[float]
    diagnostics: dict[str, float]  # keys such as "cosine/semantic-depth", "weight/depth"; empty most steps


class TrainingEngine:
    """Trains `model` one batch at a time with `optimizer` (plain or AdaTask) and `weighting`.

    model: a multi-task model with shared_parameters() and task_specific_parameters().
    compute_losses(batch): the forward and the losses of a batch, at the current parameters
        (the look-ahead calls it again, under no_grad, at displaced parameters).
    tasks: the task names, in the model's order (for messages and diagnostics).
    diagnostics_every: diagnostics every this many steps, for steps that compute per-task
        gradients anyway, or for every step kind with diagnose_plain.
    tracker: an optional optim.dominance.DominanceTracker (see MultiTaskStep).
    global_step counts the steps of the whole run; a resumed run sets it.

    Under torchrun each process feeds its shard of the global batch: the losses are those of
    the global batch (distributed.global_losses), the per-task gradients are summed over the
    processes in MultiTaskStep, and the look-ahead sees global losses too, so every process
    takes the same step as one process with the whole batch.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, weighting: WeightingMethod,
                 compute_losses: ComputeLosses, tasks: Sequence[str], clip_grad_norm: float | None = None,
                 tracker: Any = None, diagnostics_every: int = 50, diagnose_plain: bool = False):
        self.model, self.optimizer, self.weighting = model, optimizer, weighting
        self.compute_losses = compute_losses
        self.tasks = tuple(tasks)
        self.update = MultiTaskStep(optimizer, weighting, model.shared_parameters(),
                                    model.task_specific_parameters(), clip_grad_norm, tracker)
        self.diagnostics_every, self.diagnose_plain = diagnostics_every, diagnose_plain
        self.global_step = 0
        self._loss_sums = torch.zeros(len(self.tasks), dtype=torch.float64)
        self._steps = 0

    def train_step(self, batch: Any, epoch: int) -> StepResult:
        preds, terms = self.compute_losses(batch)
        losses, global_values = global_losses(terms)
        values = global_values.tolist()
        bad = [f"loss_{task} is {value}" for task, value in zip(self.tasks, values) if not math.isfinite(value)]
        if bad:
            raise NonFinite(f"non-finite loss in epoch {epoch + 1}, step {self.global_step}: {', '.join(bad)}")
        ctx = StepContext(losses=global_values, epoch=epoch, step=self.global_step,
                          lr=self.optimizer.param_groups[0]["lr"],
                          losses_after=self._lookahead(batch) if self.weighting.needs_lookahead else None)
        want = self.global_step % self.diagnostics_every == 0 and (
            self.update.computes_task_gradients or self.diagnose_plain)
        info = self.update(list(losses), ctx, want_diagnostics=want)
        self.weighting.after_step(ctx)
        self._loss_sums += torch.tensor(values, dtype=torch.float64)
        self._steps += 1
        self.global_step += 1
        return StepResult([p.detach() for p in preds], values, {self._named(k): v for k, v in info.items()})

    def end_epoch(self, epoch: int) -> None:
        """The method's end-of-epoch hook with the epoch's mean training losses (DWA's input)."""
        self.weighting.end_epoch(epoch, self._loss_sums / max(self._steps, 1))
        self._loss_sums.zero_()
        self._steps = 0

    def _lookahead(self, batch):
        def losses_now():
            return global_losses(self.compute_losses(batch)[1])[1]
        return losses_after_fn(self.model, losses_now, self.model.shared_parameters())

    def _named(self, key):
        """'cosine/0-1' → 'cosine/semantic-depth', 'weight/1' → 'weight/depth'."""
        kind, indices = key.split("/")
        return f"{kind}/" + "-".join(self.tasks[int(i)] for i in indices.split("-"))
