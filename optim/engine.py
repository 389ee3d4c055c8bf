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

    def train_step(self, batch: Any, epoch: int, extra_batches: Sequence[Any] = ()) -> StepResult:
        """One step on `batch`; with extra_batches (SDMGrad's --sdmgrad-batches), each batch's
        forward runs in turn (main batch first, each updating BatchNorm's statistics), the
        method sees the per-task gradients and losses of the LAST batch alone, and each task's
        head gets the sum of its gradients over all the batches (the authors' SDMGrad trainer).
        The result (predictions, losses, training metrics) is the main batch's."""
        preds, terms = self.compute_losses(batch)
        losses, global_values = global_losses(terms)
        values = global_values.tolist()
        self._check_finite(values, epoch)
        if extra_batches:  # the main batch's graph is freed before the next forward
            preds, head_sums = [p.detach() for p in preds], self._head_gradients(losses)
            for i, extra in enumerate(extra_batches):
                losses, global_values = global_losses(self.compute_losses(extra)[1])
                self._check_finite(global_values.tolist(), epoch)
                if i < len(extra_batches) - 1:
                    head_sums = [[a + b for a, b in zip(x, y)] for x, y in zip(head_sums, self._head_gradients(losses))]
            losses = self._plus_head_gradients(losses, head_sums)
        last = extra_batches[-1] if extra_batches else batch  # the batch whose gradients the method sees
        ctx = StepContext(losses=global_values, epoch=epoch, step=self.global_step,
                          lr=self.optimizer.param_groups[0]["lr"],
                          losses_after=self._lookahead(last) if self.weighting.needs_lookahead else None)
        want = self.global_step % self.diagnostics_every == 0 and (
            self.update.computes_task_gradients or self.diagnose_plain)
        info = self.update(list(losses), ctx, want_diagnostics=want)
        self.weighting.after_step(ctx)
        self._loss_sums += torch.tensor(values, dtype=torch.float64)
        self._steps += 1
        self.global_step += 1
        return StepResult([p.detach() for p in preds], values, {self._named(k): v for k, v in info.items()})

    def _check_finite(self, values, epoch):
        bad = [f"loss_{task} is {value}" for task, value in zip(self.tasks, values) if not math.isfinite(value)]
        if bad:
            raise NonFinite(f"non-finite loss in epoch {epoch + 1}, step {self.global_step}: {', '.join(bad)}")

    def _head_gradients(self, losses):
        """Task k's gradient of its own head from its loss on one batch (the graph is freed: the
        backward walks the heads only, never the shared trunk). K lists aligned with the heads."""
        heads = self.update.task_params
        wanted = [(k, i) for k, params in enumerate(heads) for i, p in enumerate(params) if p.requires_grad]
        out = [[torch.zeros_like(p) for p in params] for params in heads]
        if not wanted:
            return out
        grads = torch.autograd.grad(sum(losses), [heads[k][i] for k, i in wanted], allow_unused=True)
        for (k, i), g in zip(wanted, grads):
            if g is not None:
                out[k][i] = g
        return out

    def _plus_head_gradients(self, losses, head_sums):
        """losses[k] + Σ_p ⟨φ_p, h_p⟩ over task k's head parameters φ with the detached sums h:
        its gradient gains exactly h on the head and nothing on the shared parameters, so the
        update (and its all-reduce under torchrun) sums the batches' head gradients. Only the
        gradients of these terms are used (the step's loss values are the engine's)."""
        out = []
        for loss, params, sums in zip(losses, self.update.task_params, head_sums):
            terms = [(p * h).sum() for p, h in zip(params, sums) if p.requires_grad]
            out.append(loss + sum(terms) if terms else loss)
        return out

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
