"""Our side of a golden comparison: one --weighting method run through the real training step
(optim/engine.py's TrainingEngine, so optim/multitask_step.py's MultiTaskStep, the look-ahead
and the method's hooks) on a linear toy model whose gradients are exactly a golden case's inputs.

The toy: shared parameters θ (P,), one head φ_k (H,) per task, and the losses
L_k = c_k + g_k·θ + h_k·φ_k. Before every step θ and φ are set to 0, so the per-task
gradients of the shared parameters are the case's `grads`, those of the heads its
`head_grads`, the losses its `losses`, and the look-ahead losses_after(δ) = c + G δ exactly.
A plain SGD (lr = the case's "lr", default 1e-3) applies the step. Recorded per step:

    shared: the gradient the optimizer receives for θ (the sum of the method's contributions),
    heads: each head's gradient (what --head-grads gives it),
    weights: the method's effective weights (column sums of its mixing matrix), or None for a
        method that is no mixing.

The engine's end_epoch hook runs with the epoch-mean losses whenever the next step's epoch
differs (DWA, STCH). A method with extra batches per step (sdmgrad's `batches`) consumes that
many consecutive draws per update, the first being the main batch.
"""
import functools
import json
import math
import re
from pathlib import Path

import torch

from optim.engine import TrainingEngine
from optim.weighting import build_weighting

from .inputs import golden_inputs

DEFAULT_LR = 1e-3


class LinearToy(torch.nn.Module):
    """L_k = c_k + g_k·θ + h_k·φ_k, with c, g, h taken from the batch."""

    def __init__(self, num_tasks, shared_size, head_size):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(shared_size, dtype=torch.float64))
        self.heads = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(head_size, dtype=torch.float64)) for _ in range(num_tasks))

    def shared_parameters(self):
        return [self.theta]

    def task_specific_parameters(self):
        return [[head] for head in self.heads]

    def reset(self):
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()

    def compute_losses(self, batch):
        losses = [batch["losses"][k] + batch["grads"][k] @ self.theta + batch["head_grads"][k] @ head
                  for k, head in enumerate(self.heads)]
        return [loss.detach() for loss in losses], losses


def _tensors(draw):
    return {key: torch.as_tensor(draw[key], dtype=torch.float64) for key in ("grads", "head_grads", "losses")}


def batches_per_step(weighting):
    return int(getattr(weighting, "batches", 1))


def run_ours(method, case):
    """Our method `method` on a golden case (the dict of a golden file's "cases"): one dict
    per update step with "shared", "heads" and "weights" as lists of floats (see the module)."""
    draws = golden_inputs(**case["inputs"])
    num_tasks = len(draws[0]["losses"])
    shared_size, head_size = draws[0]["grads"].shape[1], draws[0]["head_grads"].shape[1]
    weighting = build_weighting(method, num_tasks, head_grads=case.get("head_grads"), **case.get("options", {}))
    model = LinearToy(num_tasks, shared_size, head_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.get("lr", DEFAULT_LR))
    tasks = [f"t{k}" for k in range(num_tasks)]
    engine = TrainingEngine(model, optimizer, weighting, model.compute_losses, tasks,
                            diagnostics_every=1, diagnose_plain=True)
    per_step = batches_per_step(weighting)
    groups = [draws[i:i + per_step] for i in range(0, len(draws) - per_step + 1, per_step)]
    out = []
    for index, group in enumerate(groups):
        epoch = group[0]["epoch"]
        model.reset()
        batches = [_tensors(draw) for draw in group]
        if per_step > 1:
            result = engine.train_step(batches[0], epoch, extra_batches=batches[1:])
        else:
            result = engine.train_step(batches[0], epoch)
        weights = [result.diagnostics[f"weight/{task}"] for task in tasks] \
            if f"weight/{tasks[0]}" in result.diagnostics else None
        out.append({"shared": _values(model.theta.grad, shared_size),
                    "heads": [_values(head.grad, head_size) for head in model.heads],
                    "weights": weights})
        if index + 1 == len(groups) or groups[index + 1][0]["epoch"] != epoch:
            engine.end_epoch(epoch)
    return out


def _values(grad, size):
    return [0.0] * size if grad is None else [float(x) for x in grad.detach().reshape(-1)]


GOLDENS = Path(__file__).resolve().parents[2] / "tests" / "goldens"


def golden_files(folder=GOLDENS):
    """The method goldens (tests/goldens/<method>.json), without the pipeline's (pipeline_*.json)."""
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("pipeline_"))


def compared(expected, ours):
    """(pairs, relative): every (what, expected value, our value) the golden fixes — shared
    update, head gradients and weights of every step, skipping what the golden leaves null —
    and the largest normwise relative difference ‖ours − expected‖∞ / ‖expected‖∞ of one
    vector (one step's shared update, one head, the weights)."""
    pairs, relative = [], 0.0
    for step, (want, got) in enumerate(zip(expected, ours, strict=True)):
        vectors = [] if want.get("shared") is None else [("shared", want["shared"], got["shared"])]
        if want.get("heads") is not None:
            vectors += [(f"heads[{k}]", w, g) for k, (w, g) in enumerate(zip(want["heads"], got["heads"], strict=True))]
        if want.get("weights") is not None:
            vectors.append(("weights", want["weights"], got["weights"]))
        for what, w, g in vectors:
            if g is None:
                raise AssertionError(f"step {step}: the golden has {what} but our method reports none")
            w, g = torch.tensor(w, dtype=torch.float64), torch.tensor(g, dtype=torch.float64)
            if w.shape != g.shape:
                raise AssertionError(f"step {step}, {what}: {len(g)} values, the golden has {len(w)}")
            scale = float(w.abs().max()) if len(w) else 0.0
            gap = float((g - w).abs().max()) if len(w) else 0.0
            relative = max(relative, gap / scale if scale > 0 else gap)
            pairs += [(f"step {step} {what}[{i}]", float(a), float(b)) for i, (a, b) in enumerate(zip(w, g))]
    return pairs, relative


@functools.cache
def measured(path, index):
    """(pairs, relative) of `compared` for case `index` of the golden file `path`, computed once
    per process (the test and the README's column share it)."""
    golden = json.loads(Path(path).read_text())
    case = golden["cases"][index]
    return compared(case["expected"], run_ours(golden["method"], case))


def reference_label(reference):
    """'LibMTL 4336804', 'torchjd==0.18.0', or 'hand-computed' for a method without public code."""
    repository, commit = reference["repository"], str(reference.get("commit", ""))
    if not repository.startswith("https://"):
        return "hand-computed (no public code)"
    name = repository.rstrip("/").split("/")[-1]
    if commit.startswith("PyPI "):
        return commit.split()[1]
    return f"{name} {commit[:7]}"


ROUNDING = 1e-15  # below it a difference is rounding, and "≤ 1e-15" on every CPU


def bound(relative):
    """The measured difference as a power-of-ten bound: '≤ 1e-15' for rounding (0 included,
    since a sum's rounding may depend on the CPU's vector width), else '< 1e-N'."""
    if relative <= ROUNDING:
        return "≤ 1e-15"
    return f"< 1e{math.floor(math.log10(relative)) + 1}"


BOUND = re.compile(r"max\. rel\. diff\. (≤ 1e-15|< 1e-?\d+)")


def same_but_bounds(table, other):
    """Whether two tables are equal except that each bound may differ by one power of ten (a
    difference near a power of ten may round to either side on another CPU)."""
    def exponent(text):
        return -15 if text.startswith("≤") else int(text.split("e")[1])
    ours, theirs = BOUND.findall(table), BOUND.findall(other)
    return BOUND.sub("", table) == BOUND.sub("", other) and len(ours) == len(theirs) and \
        all(abs(exponent(a) - exponent(b)) <= 1 for a, b in zip(ours, theirs))


def against_published(folder=GOLDENS):
    """{method: the README column's text}: the reference of its golden and the largest
    relative difference over all its cases (default and switches), then its `fidelity`."""
    from optim.weighting import WEIGHTINGS
    out = {}
    for path in golden_files(folder):
        golden = json.loads(path.read_text())
        relative = max(measured(str(path), i)[1] for i in range(len(golden["cases"])))
        method = golden["method"]
        fidelity = WEIGHTINGS[method].fidelity if method in WEIGHTINGS else ""
        out[method] = f"{reference_label(golden['reference'])}: max. rel. diff. {bound(relative)} " \
                      f"({len(golden['cases'])} cases); {fidelity}"
    return out


def readme_table():
    """The docs' method table (the block `methods` of scripts/docs_tables.py)."""
    from optim.weighting import method_table
    return method_table(against_published())


if __name__ == "__main__":
    print(readme_table())  # the docs' copy: python -m scripts.docs_tables --write
