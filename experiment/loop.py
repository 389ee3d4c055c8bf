"""The train/evaluate loop of one experiment: epochs, the run folder's files, TensorBoard and
the console (docs/design.md, "Training loop"). Under torchrun every process runs the loop on
its shards, the metrics are summed over the processes, and rank 0 alone writes."""
import contextlib
import math
import time

import torch
from tqdm import tqdm

from evaluation import console, run_record, selection, tensorboard_log, weak_baseline
from evaluation.delta_m import delta_m
from evaluation.metrics import SplitMeter
from evaluation.visualize import sample_panel
from models import MODELS
from optim import OPTIMIZERS
from optim.distributed import global_losses
from optim.dominance import csv_rows as au_csv_rows
from optim.dominance import write_csv as write_au_csv
from optim.engine import NonFinite
from optim.weighting import WEIGHTINGS
from runfolder.files import AU
from tasks import DEFAULT_TASKS, TASKS

NUM_PANELS = 4  # fixed validation images shown in TensorBoard each epoch


def train_epoch(exp, epoch, writer):
    exp.model.train()
    meter = SplitMeter(exp.tasks, exp.device)
    loader = exp.loader(exp.train_set, epoch, shuffle=True)
    extras = exp.extra_batches(epoch, len(loader))  # --sdmgrad-batches: None for one batch a step
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", leave=False,
               dynamic_ncols=True, mininterval=1.0, disable=None)
    for batch in bar:
        image, targets = exp.to_device(batch)
        step = exp.engine.global_step
        result = exp.engine.train_step((image, targets), epoch, next(extras) if extras else ())
        meter.update(result.preds, targets, result.losses)
        for task, value in zip(exp.task_names, result.losses):
            writer.add_scalar(f"train_step/loss_{task}", value, step)
        for key, value in result.diagnostics.items():
            writer.add_scalar(f"diagnostics/{key}", value, step)
        bar.set_postfix({t: f"{v:.4f}" for t, v in zip(exp.task_names, result.losses)})
    exp.engine.end_epoch(epoch)
    meter.sum_over_processes()
    return meter.compute()


@torch.no_grad()
def evaluate(exp, split="test"):
    """(metrics, sample panels) of the test split (the release's val/ folder) or of the validation
    split held out of train/ ("val"), unaugmented either way."""
    exp.model.eval()
    meter = SplitMeter(exp.tasks, exp.device)
    panels = []
    dataset = exp.test_set if split == "test" else exp.val_set
    for batch in tqdm(exp.loader(dataset, 0, shuffle=False), desc=split, leave=False, dynamic_ncols=True,
                      mininterval=1.0, disable=None):
        image, targets = exp.to_device(batch)
        preds, terms = exp.predict_and_losses((image, targets))
        meter.update(preds, targets, global_losses(terms)[1].tolist())
        for i in range(min(NUM_PANELS - len(panels), len(image))):
            panels.append(sample_panel(image[i].float().cpu().numpy(), exp.tasks, [p[i] for p in preds],
                                       [y[i] for y in targets]))
    meter.sum_over_processes()
    return meter.compute(), panels


def check_finite(exp, epoch, split_metrics):
    """The losses are checked every step, but the last step can still turn the weights NaN,
    and only the evaluated metrics ({split: metrics}) would show it. Checked once per epoch,
    before anything of it is written."""
    tensors = [*exp.model.parameters(), *(b for b in exp.model.buffers() if b.is_floating_point())]
    if not all(torch.isfinite(t).all() for t in tensors):
        raise NonFinite(f"the network's weights became NaN or infinite in epoch {epoch + 1} (the losses were "
                        f"still finite): the run diverged")
    # class_iou, a dict of ratios of counts, is finite or None by construction
    for split, metrics in split_metrics.items():
        bad = [f"{k} is {v}" for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise NonFinite(f"non-finite {split} metrics after epoch {epoch + 1}: {', '.join(bad)}")


def check_learning_rate(exp, epoch, lr):
    """A schedule that grows the learning rate beyond what the parameters' floating-point type
    holds diverges as surely as a NaN loss (torch would fail deep inside the optimizer)."""
    dtype = next(exp.model.parameters()).dtype
    if not math.isfinite(lr) or abs(lr) > torch.finfo(dtype).max:
        raise NonFinite(f"the learning rate of epoch {epoch + 1} is {lr:g}, beyond {dtype}'s range (--lr "
                        f"{exp.args.lr:g}, --lr-gamma {exp.args.lr_gamma:g} every --lr-step {exp.args.lr_step}): "
                        f"the schedule diverged")


class NoWriter:
    """What a process other than rank 0 has for the run folder's TensorBoard writer: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def run(exp):
    args = exp.args
    first_epoch, step, rows, au_rows = exp.restore() if args.resume else (0, 0, [], [])
    exp.engine.global_step = step
    main = exp.world.is_main
    if args.resume and main:  # the files as the checkpoint knew them: epochs run after it are dropped
        for stale in run_record.stale_temporaries(exp.run_dir):
            stale.unlink()
        run_record.write_metrics(exp.run_dir, rows)
        if exp.tracker:
            write_au(exp, au_rows)
        if exp.extending:  # a finished run given more --epochs: unfinished again until they are done
            (exp.run_dir / run_record.SUMMARY).unlink()
    if main:
        run_record.write_json(exp.run_dir / run_record.CONFIG, exp.config)
    print(console.header(
        exp.run_dir, f"{args.method} + {args.weighting}, seed {args.seed}, {'+'.join(exp.task_names)}",
        f"{exp.source.name} {exp.image_size[0]}x{exp.image_size[1]}, {len(exp.train_set)} train / "
        f"{f'{len(exp.val_set)} val (held out of train/) / ' if exp.val_set else ''}"
        f"{len(exp.test_set)} test, {args.classes} classes",
        f"{args.arch} x{args.width_mult}, {exp.model.parameter_counts()['total'] / 1e6:.2f} M parameters, "
        f"{exp.device}{f' x{exp.world.size} processes' if exp.world.size > 1 else ''}, "
        f"{console.thread_count(torch.get_num_threads())}",
        exp.baseline_reason if exp.baseline is None and len(exp.tasks) > 1 else None), flush=True)
    if exp.baseline_warning is not None:
        print(f"warning: {weak_baseline.describe(exp.baseline_warning)}", flush=True)
    from torch.utils.tensorboard import SummaryWriter  # a quarter second: not for --help or bad flags

    # purge_step drops the per-step events a killed run logged after its last checkpoint
    writer = SummaryWriter(log_dir=str(exp.run_dir), purge_step=step if args.resume else None) if main else NoWriter()
    if first_epoch == 0:
        tensorboard_log.write_layout(writer, exp.task_names, with_delta_m=exp.baseline is not None,
                                     with_val=exp.val_set is not None, with_val_delta_m=exp.val_baseline is not None)
    try:
        for epoch in range(first_epoch, args.epochs):
            start = time.perf_counter()
            lr = exp.optimizer.param_groups[0]["lr"]
            check_learning_rate(exp, epoch, lr)
            train_metrics = train_epoch(exp, epoch, writer)
            test_metrics, panels = evaluate(exp)
            evaluated = {"test": test_metrics, **({"val": evaluate(exp, "val")[0]} if exp.val_set else {})}
            check_finite(exp, epoch, evaluated)
            exp.scheduler.step()
            add_delta_m(exp, test_metrics, exp.baseline)
            row = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - start,
                   "train": train_metrics, "test": test_metrics}
            if exp.val_set:
                row["val"] = add_delta_m(exp, evaluated["val"], exp.val_baseline)
            rows.append(row)
            if exp.val_set:  # every row, so that a resume with another --select-by leaves no row of the old one
                for each, value in zip(rows, selection.objective_values(rows, exp.objective, exp.task_names)):
                    each["val_objective"] = value
            if exp.tracker:
                au_rows += log_dominance(writer, exp, epoch)
            if main:
                run_record.write_metrics(exp.run_dir, rows)
                if exp.tracker:
                    write_au(exp, au_rows)
                run_record.save_checkpoint(exp.run_dir, exp.checkpoint_state(epoch + 1, exp.engine.global_step,
                                                                              rows, au_rows))
            tensorboard_log.log_epoch(writer, row, panels)
            tqdm.write(console.epoch_line(row, rows, args.epochs))
    except BaseException:  # a stopped run keeps the events it logged
        with contextlib.suppress(OSError):
            writer.close()
        raise
    summary = run_record.summarize(rows, exp.baseline, exp.baseline_name, exp.objective, exp.task_names,
                                   exp.baseline_warning)
    if main:
        run_record.write_json(exp.run_dir / run_record.SUMMARY, summary)
        log_hparams(writer, exp, summary)
    writer.close()
    print(console.final_table(summary, exp.baseline, exp.baseline_name))
    print(f"results in {console.shown_path(exp.run_dir)}; curves: "
          f"{console.tool_command('tensorboard', '--logdir', console.shown_path(exp.run_dir.parent))}")
    return exp.run_dir


def add_delta_m(exp, metrics, baseline):
    """`metrics` with Δm against `baseline` (None without one; no Δm for a single-task run)."""
    if baseline is not None:
        metrics["delta_m"] = delta_m(metrics, baseline)
    elif len(exp.tasks) > 1:
        metrics["delta_m"] = None
    return metrics


def write_au(exp, au_rows):
    with run_record.atomic_file(exp.run_dir / AU) as f:
        write_au_csv(f, au_rows)


def log_dominance(writer, exp, epoch):
    """Per shared layer (input → output) and task: mean rAU to TensorBoard; returns the epoch's au.csv rows."""
    rows = exp.tracker.layer_summary()
    tensorboard_log.log_dominance(writer, rows, exp.task_names, epoch)
    return au_csv_rows(rows, epoch, exp.task_names)


def log_hparams(writer, exp, summary):
    """TensorBoard's HParams tab: what tells the run apart, what a comparison holds equal, and
    its final and last-10 metrics."""
    args = exp.args
    # the seed as text: TensorBoard shows every number with four decimals ("0.0000")
    identity = {"data": f"{exp.source.name} {exp.image_size[0]}x{exp.image_size[1]}", "method": args.method,
                "weighting": args.weighting, "seed": str(args.seed), "tasks": "+".join(exp.task_names)}
    setup = {key: getattr(args, key) for key in ("classes", "arch", "width_mult", "epochs", "batch_size", "lr",
                                                 "augment")}
    choices = {"method": list(OPTIMIZERS), "weighting": list(WEIGHTINGS),
               "tasks": list(dict.fromkeys(["+".join(DEFAULT_TASKS), "+".join(TASKS), *TASKS])), "arch": list(MODELS)}
    tensorboard_log.log_hparams(writer, identity, setup, choices, summary, args.epochs)
