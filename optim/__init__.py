"""Everything that turns task losses into a parameter update.

The registry maps each `--method` name to a constructor taking (shared_params,
task_params, lr); the CLI's choices come from it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from .adatask import AdagradWithAdaTask, AdamWithAdaTask, AdaTaskOptimizer, RMSpropWithAdaTask
from .task_gradients import task_gradients

# (shared_params, task_params: K lists, lr) -> the optimizer
OptimizerBuilder = Callable[[Iterable[Tensor], Sequence[Iterable[Tensor]], float], torch.optim.Optimizer]


def _plain(optimizer_class: type[torch.optim.Optimizer]) -> OptimizerBuilder:
    """A torch.optim optimizer over all parameters, fed the summed gradient."""
    def build(shared_params, task_params, lr):
        groups = [{"params": list(shared_params)}] + [{"params": list(p)} for p in task_params]
        return optimizer_class([g for g in groups if g["params"]], lr=lr)
    return build


def _adatask(optimizer_class: type[AdaTaskOptimizer]) -> OptimizerBuilder:
    def build(shared_params, task_params, lr):
        return optimizer_class(shared_params, task_params=task_params, lr=lr)
    return build


OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "adam": _plain(torch.optim.Adam),
    "adam_with_adatask": _adatask(AdamWithAdaTask),
    "rmsprop": _plain(torch.optim.RMSprop),
    "rmsprop_with_adatask": _adatask(RMSpropWithAdaTask),
    "adagrad": _plain(torch.optim.Adagrad),
    "adagrad_with_adatask": _adatask(AdagradWithAdaTask),
    "sgd": _plain(torch.optim.SGD),
}


def build_optimizer(name: str, shared_params: Iterable[Tensor], task_params: Sequence[Iterable[Tensor]],
                    lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown --method {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](shared_params, task_params, lr)


__all__ = [
    "OPTIMIZERS",
    "AdaTaskOptimizer",
    "AdagradWithAdaTask",
    "AdamWithAdaTask",
    "RMSpropWithAdaTask",
    "build_optimizer",
    "task_gradients",
]
