"""Everything that turns task losses into a parameter update.

The registry maps each `--method` name to a constructor taking (shared_params,
task_params, lr); the CLI's choices come from it.
"""
from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from .adatask import AdagradWithAdaTask, AdamWithAdaTask, AdaTaskOptimizer, RMSpropWithAdaTask
from .task_gradients import task_gradients

# One line per optimizer base: a class that names its torch.optim form in `plain`
# (docs/design.md, "How to add an optimizer base").
BASES = tuple(map(pkgutil.resolve_name, (
    "optim.adatask:AdamWithAdaTask",
    "optim.adatask:RMSpropWithAdaTask",
    "optim.adatask:AdagradWithAdaTask",
    "optim.sgd_core:SGDCore",
)))

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


def _forms(base: type) -> dict[str, OptimizerBuilder]:
    """--method <plain> and, for an AdaTask base, --method <plain>_with_adatask."""
    plain = base.plain.__name__.lower()
    forms = {plain: _plain(base.plain)}
    if issubclass(base, AdaTaskOptimizer):
        forms[f"{plain}_with_adatask"] = _adatask(base)
    return forms


OPTIMIZERS: dict[str, OptimizerBuilder] = {name: build for base in BASES for name, build in _forms(base).items()}


def method_list() -> str:
    """The --method names as docs/training.md's flag table lists them, generated from the registry."""
    return ", ".join(f"`{name}`" for name in OPTIMIZERS)


def build_optimizer(name: str, shared_params: Iterable[Tensor], task_params: Sequence[Iterable[Tensor]],
                    lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown --method {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](shared_params, task_params, lr)


__all__ = [
    "BASES",
    "OPTIMIZERS",
    "AdaTaskOptimizer",
    "AdagradWithAdaTask",
    "AdamWithAdaTask",
    "RMSpropWithAdaTask",
    "build_optimizer",
    "task_gradients",
]
