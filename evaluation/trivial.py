"""Trivial predictors: the floor a trained model has to beat.

Every task of the registry (tasks/) whose folders the data holds is scored with its own
trivial predictor (Task.trivial_predictor, e.g. the majority train class everywhere),
fitted on the train split's targets where it learns anything, and scored on val by its
task's meter, as in training. Batches hold one sample each, so a metric the meter averages
per batch is a mean over val samples.

    python3 -m evaluation.trivial --data-path DIR [--classes 7|19] [--tasks T ...] [--json OUT]
"""
import argparse
import json
from pathlib import Path

from data.check import load_npy
from data.layout import CLASS_COUNTS, IMAGE_DIR
from tasks import TASKS, TaskSettings, build_tasks


def _count(split_dir):
    count = len(list((split_dir / IMAGE_DIR).glob("*.npy")))
    if count == 0:
        raise ValueError(f"{split_dir / IMAGE_DIR}: no .npy samples; expected the layout of data/layout.py")
    return count


def present_tasks(data_path, num_classes=7):
    """The registry's task names whose folders the val split holds, in canonical order."""
    val = Path(data_path) / "val"
    return [task.name for task in build_tasks(TASKS, TaskSettings(classes=num_classes))
            if all((val / f).is_dir() for f in task.folders())]


def _targets(split_dir, count, tasks):
    """Yield [target per task], each as its task's meter takes it with a batch of one, for
    every sample of a split."""
    for i in range(count):
        arrays = {f: load_npy(split_dir / f / f"{i}.npy") for task in tasks for f in task.folders()}
        sizes = {f: a.shape[:2] for f, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{split_dir} sample {i}: the folders' arrays differ in (H, W): {sizes}")
        yield [task.to_tensor(task.target(arrays))[None] for task in tasks]


def trivial_scores(data_path, num_classes=7, tasks=None):
    """(what was fitted, the predictors in words, {task name: its meter's output on val}) of
    the trivial predictors of `tasks` (default: every task whose folders the data holds)."""
    train_dir, val_dir = Path(data_path) / "train", Path(data_path) / "val"
    train_count, val_count = _count(train_dir), _count(val_dir)
    available = present_tasks(data_path, num_classes)
    names = available if tasks is None else list(tasks)
    missing = [name for name in names if name not in available]
    if missing:
        raise ValueError(f"{val_dir}: no folders for task {', '.join(missing)} "
                         f"(present: {', '.join(available) or 'none'})")
    if not names:
        raise ValueError(f"{data_path}: the data holds the folders of no task of {', '.join(TASKS)}")
    task_list = build_tasks(names, TaskSettings(classes=num_classes))
    predictors = [task.trivial_predictor() for task in task_list]
    for task, predictor in zip(task_list, predictors):
        lacking = [f for f in task.folders() if predictor.fits and not (train_dir / f).is_dir()]
        if lacking:
            raise ValueError(f"{train_dir}: no {', '.join(lacking)}/, which the trivial {task.name} predictor "
                             f"is fitted on")

    fitting = [p for p in predictors if p.fits]
    if fitting:
        for targets in _targets(train_dir, train_count, [t for t, p in zip(task_list, predictors) if p.fits]):
            for predictor, target in zip(fitting, targets):
                predictor.observe(target[0])
    fitted = {}
    for predictor in predictors:
        fitted.update(predictor.fitted(train_dir))

    meters = [task.meter() for task in task_list]
    for targets in _targets(val_dir, val_count, task_list):
        for meter, predictor, target in zip(meters, predictors, targets):
            meter.update(predictor.predict(target), target)
    description = ", ".join(p.describe() for p in predictors)
    return fitted, description, {task.name: meter.compute() for task, meter in zip(task_list, meters)}


def trivial_metrics(data_path, num_classes=7, tasks=None):
    """trivial_scores as one flat dict: every task's metrics (its meter's keys: miou, pix_acc,
    class_iou, abs_err, ..., inst_err), what was fitted (majority_class, mean_depth),
    "tasks" (the names scored) and "description" (the predictors in words)."""
    return _flat(*trivial_scores(data_path, num_classes, tasks))


def _flat(fitted, description, scores):
    result = {"tasks": list(scores)}
    for metrics in scores.values():
        result.update(metrics)
    return {**result, **fitted, "description": description}


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", required=True, help="root holding train/ and val/")
    parser.add_argument("--classes", type=int, default=7, choices=CLASS_COUNTS)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                        help="the tasks to score (default: every task whose folders the data holds)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    try:
        fitted, description, scores = trivial_scores(args.data_path, args.classes, args.tasks)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"trivial predictors on {args.data_path} val ({args.classes} classes): {description}")
    for metrics in scores.values():
        for key, value in metrics.items():
            if isinstance(value, float):  # not the per-class dicts
                print(f"  {key:<11} {value:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(_flat(fitted, description, scores), indent=2) + "\n")


if __name__ == "__main__":
    main()
