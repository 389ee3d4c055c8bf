"""rAU per shared layer, input to output, for several runs side by side (docs/methods.md, "AU and rAU").

    python3 -m scripts.plot_au RUN_DIR... --out results/au.png [--epoch N] [--task semantic]
        [--table results/au.md]

Reads each run's au.csv (written by --track-au, one block per epoch) and labels the run
by config.json's method + weighting. One panel per run: the layer mean of one task's rAU
(--task, default the first in au.csv), its q10–q90 band over the layer's elements, the
balanced level 1/K, and as bars the fraction of the layer's elements dominated by any task.
The markdown table gives per run: the task's mean rAU over the lower and the upper half of
the layers, the largest |rAU − 1/K| of a layer mean (any task), and the mean over the top
quarter of layers of the fraction of dominated elements.
"""
import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no global backend state

from runfolder.files import AU as AU_CSV
from runfolder.files import CONFIG

STATS = ("mean_rau", "dominated", "q10", "q50", "q90")


@dataclass
class RunAU:
    label: str
    epoch: int
    task: str
    tasks: list  # task names in au.csv order
    layers: list  # layer names, input → output
    stats: dict  # task → stat → np.array over layers


def read_blocks(path):
    """{epoch: {(layer_index, task): row}}; a later row replaces an earlier one, so an epoch
    that a resumed run wrote twice counts once."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"epoch", "layer_index", "layer", "task", *STATS} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not an au.csv (missing columns: {', '.join(sorted(missing))})")
        blocks = {}
        for row in reader:
            blocks.setdefault(int(row["epoch"]), {})[(int(row["layer_index"]), row["task"])] = row
    if not blocks:
        raise ValueError(f"{path}: no rows")
    return blocks


def run_label(run_dir):
    config = run_dir / CONFIG
    if not config.exists():
        return run_dir.name
    settings = json.loads(config.read_text()).get("settings", {})
    parts = [settings[key] for key in ("method", "weighting") if settings.get(key)]
    return " + ".join(parts) if parts else run_dir.name


def load_run(run_dir, epoch=None, task=None):
    run_dir = Path(run_dir)
    blocks = read_blocks(run_dir / AU_CSV)
    epoch = max(blocks) if epoch is None else epoch
    if epoch not in blocks:
        raise ValueError(f"{run_dir}: no epoch {epoch} in {AU_CSV} (it has {min(blocks)}..{max(blocks)})")
    rows = blocks[epoch]
    tasks = list(dict.fromkeys(t for _, t in rows))
    task = tasks[0] if task is None else task
    if task not in tasks:
        raise ValueError(f"{run_dir}: no task {task!r} in {AU_CSV} (tasks: {', '.join(tasks)})")
    indices = sorted({i for i, _ in rows})
    layers = [rows[(i, tasks[0])]["layer"] for i in indices]
    stats = {t: {s: np.array([float(rows[(i, t)][s]) for i in indices]) for s in STATS} for t in tasks}
    return RunAU(run_label(run_dir), epoch, task, tasks, layers, stats)


def distinct_labels(runs, run_dirs):
    """Runs sharing a method + weighting are told apart by their folder name."""
    labels = [r.label for r in runs]
    for run, run_dir in zip(runs, run_dirs):
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({Path(run_dir).name})"


def summary(run):
    """The table's numbers for one run (see the module docstring)."""
    n, balanced = len(run.layers), 1 / len(run.tasks)
    mean = run.stats[run.task]["mean_rau"]
    dominated = sum(run.stats[t]["dominated"] for t in run.tasks)  # disjoint for a threshold ≥ 1/2
    imbalance = max(np.abs(run.stats[t]["mean_rau"] - balanced).max() for t in run.tasks)
    half, quarter = n // 2, math.ceil(n / 4)
    return {"lower": mean[:half].mean() if half else math.nan, "upper": mean[half:].mean(),
            "imbalance": imbalance, "dominated_top": dominated[n - quarter:].mean()}


def plot(runs, path):
    fig = Figure(figsize=(1 + 4.5 * len(runs), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(runs), sharey=True))
    for ax, run in zip(axes, runs):
        stats, x = run.stats[run.task], np.arange(len(run.layers))
        dominated = sum(run.stats[t]["dominated"] for t in run.tasks)
        ax.bar(x, dominated, width=0.8, color="0.8", label="fraction of elements dominated (any task)")
        ax.fill_between(x, stats["q10"], stats["q90"], alpha=0.25, color="C0", label=f"rAU({run.task}) q10–q90")
        ax.plot(x, stats["mean_rau"], color="C0", marker=".", label=f"rAU({run.task}), layer mean")
        ax.axhline(1 / len(run.tasks), color="black", linestyle="--", linewidth=1, label="balanced, 1/K")
        every = max(1, len(x) // 8)  # label about eight layers, always the first and the last
        ticks = sorted(set(x[::every]) | {x[-1]})
        ax.set_xticks(ticks, [run.layers[i] for i in ticks], rotation=90, fontsize=7)
        ax.set(title=f"{run.label} (epoch {run.epoch})", xlabel="shared layer, input → output", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rAU")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    fig.savefig(path, dpi=100)


def markdown(runs, figure=None):
    task = runs[0].task
    out = ["# Task dominance (rAU) per shared layer", "",
           (f"rAU of `{task}` averaged over the lower and the upper half of the shared layers (input → output); "
            "the largest |rAU − 1/K| of a layer mean over all tasks; the fraction of elements dominated by any task "
            "(rAU above the tracker's threshold, 0.9 by default), averaged over the top quarter of the layers."), "",
           (f"| Run | Epoch | rAU({task}), lower half | rAU({task}), upper half | max \\|rAU − 1/K\\| "
            "| dominated, top quarter |"),
           "|---|---:|---:|---:|---:|---:|"]
    for run in runs:
        s = summary(run)
        out.append(f"| {run.label} | {run.epoch} | {s['lower']:.3f} | {s['upper']:.3f} | {s['imbalance']:.3f} "
                   f"| {s['dominated_top']:.3f} |")
    if figure:
        out += ["", f"![rAU per shared layer]({figure})"]
    return "\n".join(out) + "\n"


def figure_link(figure, table):
    """The figure as the markdown table links it: relative to the table's folder if inside it."""
    try:
        return figure.resolve().relative_to(table.resolve().parent)
    except ValueError:
        return figure.resolve()


def main(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders holding au.csv (from --track-au)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--epoch", type=int, help="epoch to show (default: each run's last)")
    parser.add_argument("--task", help="task whose rAU is drawn (default: the first in au.csv)")
    parser.add_argument("--table", help="also write the markdown table here")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(d, args.epoch, args.task) for d in args.runs]
    except (OSError, ValueError) as e:
        sys.exit(f"plot_au: {e}")
    distinct_labels(runs, args.runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, out)
    table = markdown(runs, figure_link(out, Path(args.table)) if args.table else out)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(table)
    print(table, end="")
    print(f"wrote {out}" + (f" and {args.table}" if args.table else ""))


if __name__ == "__main__":
    main()
