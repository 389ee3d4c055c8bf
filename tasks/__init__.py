"""The task registry (docs/design.md, "Tasks"): one module per task, one line here.

TASKS maps each --tasks name to its class, in the canonical order that outputs, losses and
metrics follow. Everything else iterates it; nothing else names a task.
"""
from collections.abc import Iterable

from .base import Metric, Task, TaskMeter, TaskSettings
from .depth import DepthTask
from .instance import InstanceTask
from .semantic import SemanticTask

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (SemanticTask, InstanceTask, DepthTask)}
DEFAULT_TASKS = ("semantic", "depth")  # the MTAN release's two tasks


def canonical(names: Iterable[str]) -> tuple[str, ...]:
    """`names` in the registry's order; ValueError naming the valid names for an unknown one."""
    names = list(names)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"tasks must be distinct names from {', '.join(TASKS)}; got {' '.join(names) or 'none'}")
    return tuple(n for n in TASKS if n in names)


def build_tasks(names: Iterable[str], settings: TaskSettings | None = None) -> list[Task]:
    """One Task per name, in canonical order, for a run with `settings`."""
    return [TASKS[name](settings) for name in canonical(names)]


def reported_metrics(names: Iterable[str]) -> list[Metric]:
    """The reported metrics of the tasks `names`, in canonical order: Δm averages over them."""
    return [m for name in canonical(names) for m in TASKS[name].metrics]


def task_of_metric(key: str) -> str:
    """The task that reports metric `key`."""
    return next(name for name, cls in TASKS.items() if any(m.key == key for m in cls.metrics))


__all__ = ["DEFAULT_TASKS", "TASKS", "Metric", "Task", "TaskMeter", "TaskSettings", "build_tasks", "canonical",
           "reported_metrics", "task_of_metric"]
