"""The task registry (docs/design.md, "Tasks"): one module per task, one line here.

TASKS maps each --tasks name to its entry, in the canonical order that outputs, losses and
metrics follow. Everything else iterates it; nothing else names a task.

An entry holds what is known without torch (the name and the release folders the task may
read) and where its class is; the class, and torch with it, is imported only when a task is
built or its metrics are asked for. So code that needs the names alone (the sweeps' plan and
command line) never imports torch. tests/test_tasks.py checks each entry against its class.
"""
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass

from data.layout import CLASS_COUNTS, DEPTH_DIR, INSTANCE_DIR, label_dir

from .base import Metric, Task, TaskMeter, TaskSettings, TrivialPredictor


@dataclass(frozen=True)
class TaskEntry:
    """A task's registry line.

    folders: every release folder the task may read besides image/, for any settings (which
        label set it reads depends on --classes; Task.folders() gives a run's).
    metric_keys: the keys of its reported metrics, as its class declares them (what
        --status shows without loading the class).
    cls: "module:Class" of its Task subclass.
    lower_is_better: those of metric_keys whose Metric is not higher_is_better (what the
        validation objective's direction needs without loading the class, evaluation/selection.py).
    """

    name: str
    folders: tuple[str, ...]
    metric_keys: tuple[str, ...]
    cls: str
    lower_is_better: tuple[str, ...] = ()

    def load(self) -> type[Task]:
        """The task's class (imports its module, and torch)."""
        return pkgutil.resolve_name(self.cls)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The reported metrics its class declares (loads the class)."""
        return self.load().metrics


TASKS: dict[str, TaskEntry] = {entry.name: entry for entry in (
    TaskEntry("semantic", tuple(map(label_dir, CLASS_COUNTS)), ("miou", "pix_acc"), "tasks.semantic:SemanticTask"),
    TaskEntry("instance", (INSTANCE_DIR,), ("inst_err",), "tasks.instance:InstanceTask", ("inst_err",)),
    TaskEntry("depth", (DEPTH_DIR,), ("abs_err", "rel_err"), "tasks.depth:DepthTask", ("abs_err", "rel_err")),
)}
DEFAULT_TASKS = ("semantic", "depth")  # the MTAN release's two tasks


def canonical(names: Iterable[str]) -> tuple[str, ...]:
    """`names` in the registry's order; ValueError naming the valid names for an unknown one."""
    names = list(names)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"tasks must be distinct names from {', '.join(TASKS)}; got {' '.join(names) or 'none'}")
    return tuple(n for n in TASKS if n in names)


def build_tasks(names: Iterable[str], settings: TaskSettings | None = None) -> list[Task]:
    """One Task per name, in canonical order, for a run with `settings` (loads their classes)."""
    return [TASKS[name].load()(settings) for name in canonical(names)]


def reported_metrics(names: Iterable[str]) -> list[Metric]:
    """The reported metrics of the tasks `names`, in canonical order: Δm averages over them
    (loads their classes)."""
    return [m for name in canonical(names) for m in TASKS[name].metrics]


def reported_metric_keys(names: Iterable[str]) -> list[str]:
    """The keys of reported_metrics(names), from the registry alone (no class loaded, no torch)."""
    return [key for name in canonical(names) for key in TASKS[name].metric_keys]


def task_of_metric(key: str) -> str:
    """The task that reports metric `key`."""
    return next(name for name, entry in TASKS.items() if any(m.key == key for m in entry.metrics))


__all__ = ["DEFAULT_TASKS", "TASKS", "Metric", "Task", "TaskEntry", "TaskMeter", "TaskSettings", "TrivialPredictor",
           "build_tasks", "canonical", "reported_metric_keys", "reported_metrics", "task_of_metric"]
