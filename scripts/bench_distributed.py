"""What one run across processes pays to communicate, per training step, on the CPU with gloo.

    .venv/bin/python -m scripts.bench_distributed [--width-mult 1.0] [--steps 3]

Runs SegNet-MTAN (semantic + depth, 128x256, a global batch of 2) for a few steps in one
process, then as `torchrun --nproc-per-node 2` (one sample per process), each with one torch
thread, and prints per step: the collectives issued (BatchNorm statistics forward and
backward, the losses, the flat gradient all-reduce), the megabytes all-reduced, the seconds
spent in them, and the step time against the single process's. Every call of
torch.distributed.all_reduce is timed (the BatchNorm one goes through it too). The numbers
are those of two processes on one machine's loopback; between GPUs NCCL's are different.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from experiment.world import shard
from models import build_model
from models.synced_batchnorm import synchronise_batchnorm
from optim import build_optimizer
from optim.engine import TrainingEngine
from optim.weighting import build_weighting
from tasks import TaskSettings, build_tasks

CASES = [("adam", "ew"), ("adam_with_adatask", "ew"), ("adam_with_adatask", "pcgrad")]
GLOBAL_BATCH, HEIGHT, WIDTH = 2, 128, 256


class CollectiveClock:
    """Counts and times every torch.distributed.all_reduce of this process."""

    def __init__(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0
        self._all_reduce = dist.all_reduce
        dist.all_reduce = self._timed

    def _timed(self, tensor, *args, **kwargs):
        start = time.perf_counter()
        result = self._all_reduce(tensor, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.bytes += tensor.numel() * tensor.element_size()
        return result

    def reset(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0


def measure(method, weighting, width_mult, steps, rank=0, size=1):
    """(seconds per step, collectives per step, MB all-reduced per step, seconds in them per step)."""
    tasks = build_tasks(["semantic", "depth"], TaskSettings())
    torch.manual_seed(0)
    model = build_model("mtan", tasks, width_mult)
    if size > 1:
        synchronise_batchnorm(model)
    optimizer = build_optimizer(method, model.shared_parameters(), model.task_specific_parameters(), 1e-4)

    def compute_losses(batch):
        image, targets = batch
        preds = model(image)
        return preds, [task.loss_terms(p, y) for task, p, y in zip(tasks, preds, targets)]
    engine = TrainingEngine(model, optimizer, build_weighting(weighting, 2), compute_losses, ["semantic", "depth"])
    g = torch.Generator().manual_seed(1)
    image = torch.rand(GLOBAL_BATCH, 3, HEIGHT, WIDTH, generator=g)
    targets = [torch.randint(0, 7, (GLOBAL_BATCH, HEIGHT, WIDTH), generator=g),
               torch.rand(GLOBAL_BATCH, 1, HEIGHT, WIDTH, generator=g)]
    part = shard(list(range(GLOBAL_BATCH)), rank, size)
    batch = (image[part], [y[part] for y in targets])
    clock = CollectiveClock() if size > 1 else None
    engine.train_step(batch, 0)  # warm-up
    if clock:
        clock.reset()
    start = time.perf_counter()
    for _ in range(steps):
        engine.train_step(batch, 0)
    seconds = (time.perf_counter() - start) / steps
    if clock is None:
        return seconds, 0, 0.0, 0.0
    return seconds, clock.calls / steps, clock.bytes / steps / 1e6, clock.seconds / steps


def main():
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # file where rank 0 of the torchrun writes its rows
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        dist.init_process_group("gloo")
        rows = [measure(*case, args.width_mult, args.steps, dist.get_rank(), dist.get_world_size()) for case in CASES]
        if dist.get_rank() == 0:
            Path(args.worker).write_text(json.dumps(rows))
        dist.destroy_process_group()
        return
    single = [measure(*case, args.width_mult, args.steps) for case in CASES]
    rows_file = Path(f"/tmp/bench_distributed_{os.getpid()}.txt")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "scripts.bench_distributed", "--width-mult", str(args.width_mult), "--steps", str(args.steps),
                    "--worker", str(rows_file)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stderr=subprocess.DEVNULL)
    double = json.loads(rows_file.read_text())
    rows_file.unlink()
    print(f"SegNet-MTAN x{args.width_mult}, semantic + depth, {HEIGHT}x{WIDTH}, global batch {GLOBAL_BATCH}, "
          f"1 thread per process, gloo on one machine, mean of {args.steps} steps\n")
    print("| method + weighting | 1 process s/step | 2 processes s/step | collectives/step | MB all-reduced/step "
          "| s in collectives/step | share of the step |")
    print("|---|---|---|---|---|---|---|")
    for (method, weighting), one, (two, calls, megabytes, comm) in zip(CASES, single, double):
        print(f"| {method} + {weighting} | {one[0]:.2f} | {two:.2f} | {calls:.0f} | {megabytes:.2f} | {comm:.2f} "
              f"| {comm / two:.0%} |")


if __name__ == "__main__":
    main()
