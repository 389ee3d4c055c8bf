"""Everything the training loop reports for one split: every task's meter and loss (docs/design.md, "Tasks").

The metrics themselves are the tasks' meters (Task.meter, built on tasks/meters.py).
"""
import math


class SplitMeter:
    """Everything the training loop reports for one split in one epoch.

    `tasks`: Task objects (tasks/). `update(preds, targets, losses)` takes one entry per task,
    in the order of `tasks`, each prediction and target as the model and the dataset give
    them, and the losses as floats (or 0-dim tensors). `compute()` gives each task's
    "loss_<task>" and its meter's metrics (Python floats, or dicts of them such as
    semantic's class_iou, None where undefined).
    """

    def __init__(self, tasks, device="cpu"):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("a SplitMeter needs at least one task")
        self.device = device
        self.reset()

    def reset(self):
        self._meters = [task.meter(self.device) for task in self.tasks]
        self._loss_sums = [0.0] * len(self.tasks)
        self._batches = 0

    def update(self, preds, targets, losses):
        if not len(preds) == len(targets) == len(losses) == len(self.tasks):
            raise ValueError(f"expected one prediction, target and loss per task {[t.name for t in self.tasks]}, "
                             f"got {len(preds)}, {len(targets)}, {len(losses)}")
        for i, (meter, pred, target, loss) in enumerate(zip(self._meters, preds, targets, losses)):
            self._loss_sums[i] += float(loss)
            meter.update(pred, target)
        self._batches += 1

    def sum_over_processes(self):
        """Under torchrun: every task meter summed over the processes (the losses given to
        `update` are the global batch's already). Call once, before compute()."""
        for meter in self._meters:
            meter.sum_over_processes()

    def compute(self):
        out = {f"loss_{task.name}": total / self._batches if self._batches else math.nan
               for task, total in zip(self.tasks, self._loss_sums)}
        for meter in self._meters:
            out.update(meter.compute())
        return out
