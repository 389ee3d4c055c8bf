"""What a run shows in TensorBoard: its tags, the Custom Scalars layout and the HParams session.

Tags. Scalars and Time Series sort tag groups (the part before the first "/") by name, so the
per-epoch groups are numbered in the order a reader wants them:

    1 test/<metric>, 1 test/delta_m, 1 test/sample <i>  test metrics (Δm when defined), sample panels
    1 val/<metric>, 1 val/delta_m, 1 val/objective      with --val-fraction: the validation split held out
                                                        of train/ (the test split is the release's val/)
    2 train/<metric>, 2 train/lr                        the training split's metrics, the learning rate
    3 test IoU/<class>, 3 val IoU/<class>, 4 train IoU/<class>  IoU per class (no point where undefined)

The unnumbered groups follow, by name: diagnostics/… (per step), final/… and last10/… (one
point each at the last epoch: what the HParams tab reads), rau_<task>/<layer> (--track-au)
and train_step/loss_<task> (per step). Per-step tags use the global step; epoch steps count
from 1, as the console does.
"""
from tasks import DEFAULT_TASKS, TASKS, canonical, reported_metrics

TEST, VAL, TRAIN = "1 test", "1 val", "2 train"
GROUPS = {"test": TEST, "val": VAL, "train": TRAIN}
IOU_GROUPS = {"test": "3 test IoU", "val": "3 val IoU", "train": "4 train IoU"}
# Shown first in the HParams tab: the last-10 means are what evaluation/aggregate/ reports.
SUMMARIES = ("last10", "final")


def task_metrics(task):
    """The reported metric keys of task `task` (a name), from the registry."""
    return tuple(m.key for m in TASKS[task].metrics)


def hparam_metrics(tasks):
    """The HParams tab's metrics of a run of `tasks` (names): the reported metrics of those tasks
    and of DEFAULT_TASKS, in the registry's order, then delta_m. With the default tasks in every
    list, the runs of a semantic + depth sweep, its single-task runs included, all list the same
    metrics (TensorBoard takes one run's list for all)."""
    return (*(m.key for m in reported_metrics(canonical({*DEFAULT_TASKS, *tasks}))), "delta_m")


def _tasks_of(summary):
    """The tasks whose reported metrics a summary.json holds."""
    return [name for name, cls in TASKS.items() if any(m.key in summary["final"] for m in cls.metrics)]


def layout(tasks, with_delta_m, with_val=False, with_val_delta_m=False):
    """Custom Scalars: each metric and each task's loss on a test and a train chart of its own,
    and a val chart beside them when the run holds a validation split out (TensorBoard colours a
    chart's lines by run, so a chart holding two splits could not tell them apart), then Δm
    (when the run has a baseline) and the learning rate in a category named for what it holds,
    and the validation objective with val Δm (when a baseline gives val metrics). Runs' layouts
    merge by category title in TensorBoard."""
    metrics = [key for task in canonical(tasks) for key in task_metrics(task)]
    losses = [f"loss_{t}" for t in canonical(tasks)]
    splits = ((TEST, "test"), *([(VAL, "val")] if with_val else []), (TRAIN, "train"))
    charts = {f"{kind}, {split_name}": {f"{key} ({split_name})": ["Multiline", [f"^{split}/{key}$"]] for key in keys}
              for kind, keys in (("metrics", metrics), ("losses", losses))
              for split, split_name in splits}
    rate = {"learning rate": ["Multiline", [f"^{TRAIN}/lr$"]]}
    if with_delta_m:
        charts |= {"Δm and learning rate": {"test Δm (%, lower is better)": ["Multiline", [f"^{TEST}/delta_m$"]],
                                            **rate}}
    else:
        charts |= {"learning rate": rate}
    if with_val:
        objective = {"val objective (--select-by)": ["Multiline", [f"^{VAL}/objective$"]]}
        if with_val_delta_m:
            objective["val Δm (%, lower is better)"] = ["Multiline", [f"^{VAL}/delta_m$"]]
        charts |= {"validation objective": objective}
    return charts


def write_layout(writer, tasks, with_delta_m, with_val=False, with_val_delta_m=False):
    """Once per run: a resumed run's first event file holds it already."""
    writer.add_custom_scalars(layout(tasks, with_delta_m, with_val, with_val_delta_m))


def log_epoch(writer, row, panels):
    """A metrics.jsonl row (0-based "epoch") and the epoch's sample panels, at step epoch + 1."""
    step = row["epoch"] + 1
    writer.add_scalar(f"{TRAIN}/lr", row["lr"], step)
    if "val_objective" in row:
        writer.add_scalar(f"{VAL}/objective", row["val_objective"], step)
    for split, group in GROUPS.items():
        for key, value in row.get(split, {}).items():
            if key == "class_iou":
                for name, iou in value.items():
                    if iou is not None:
                        writer.add_scalar(f"{IOU_GROUPS[split]}/{name}", iou, step)
            elif value is not None:
                writer.add_scalar(f"{group}/{key}", value, step)
    for i, panel in enumerate(panels, start=1):
        writer.add_image(f"{TEST}/sample {i}", panel, step, dataformats="HWC")
    writer.flush()


def log_dominance(writer, layer_rows, tasks, epoch):
    """Per shared layer (input → output) and task: the mean rAU of a 0-based epoch."""
    for row in layer_rows:
        tag = f"rau_{tasks[row['task']]}/{row['layer_index']:02d}-{row['layer']}"
        writer.add_scalar(tag, row["mean_rau"], epoch + 1)


def log_hparams(writer, identity, setup, choices, summary, epochs):
    """The HParams tab's session of this run, in the run's own event file so that the session
    bears the run's name: `identity` (the settings that tell runs apart) and `setup` (what a comparison
    must hold equal) as columns, `choices` the possible values of string settings (the tab's
    filter lists them), and summary.json's last10/… and final/… metrics, written as scalars
    at the last epoch.

    TensorBoard shows five hparams columns by default, those marked `differs` first. A run
    cannot know which settings vary across the runs beside it, so `differs` marks `identity`;
    the other columns and metrics are one tick away. TensorBoard takes one run's list of columns
    and metrics for all: every run writes the same columns, and the metrics of its tasks and of
    DEFAULT_TASKS (hparam_metrics); a metric a run lacks stays empty.
    """
    # Imported here: tensorboard's hparams modules take 0.2 s, which --help need not wait for.
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    def write(tag, **data):
        content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
        summary_pb = Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])
        writer.file_writer.add_summary(summary_pb, epochs)

    def info(name, value):
        kind = "BOOL" if isinstance(value, bool) else "STRING" if isinstance(value, str) else "FLOAT64"
        domain = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=c) for c in choices[name]]) \
            if name in choices else None
        return api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(f"DATA_TYPE_{kind}"),
                                  domain_discrete=domain, differs=name in identity)

    def proto_value(value):
        if isinstance(value, bool):
            return struct_pb2.Value(bool_value=value)
        return struct_pb2.Value(string_value=value) if isinstance(value, str) else struct_pb2.Value(number_value=value)

    hparams = {**identity, **setup}
    metrics = hparam_metrics(_tasks_of(summary))
    tags = [f"{kind}/{key}" for kind in SUMMARIES for key in metrics]
    write(metadata.EXPERIMENT_TAG, experiment=api_pb2.Experiment(
        hparam_infos=[info(k, v) for k, v in hparams.items()],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in tags]))
    write(metadata.SESSION_START_INFO_TAG, session_start_info=plugin_data_pb2.SessionStartInfo(
        hparams={k: proto_value(v) for k, v in hparams.items()}))
    for kind in SUMMARIES:
        values = {**summary[kind], "delta_m": summary["delta_m"][kind]}
        for key in metrics:
            if values.get(key) is not None:
                writer.add_scalar(f"{kind}/{key}", values[key], epochs)
    write(metadata.SESSION_END_INFO_TAG, session_end_info=plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value("STATUS_SUCCESS")))
    writer.flush()
