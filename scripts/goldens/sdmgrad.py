"""Goldens from the SDMGrad authors' code (github.com/OptMN-Lab/sdmgrad): the class `SDMGrad` of
methods/weight_methods.py, as experiments/cityscapes/trainer.py calls it, on the seeded inputs of
scripts/goldens/inputs.py, in float64.

Their trainer draws two extra batches per step (`next(iter(train_aux_loader))`, twice) and
hands SDMGrad the 3K losses (main batch, extra 1, extra 2; task-major within each batch); its
`backward` fills the shared gradient and clips it to `max_norm`, and every loss's backward
accumulates into the heads. Here a step is the same call on the linear toy of
scripts/goldens/ours.py, L_k = c_k + g_k·θ + h_k·φ_k at θ = φ = 0 (reset before every step, as
their optimizer.zero_grad()), with draws 3s, 3s+1, 3s+2 of golden_inputs as the step's three
batches. Recorded: θ.grad (the shared update), each head's .grad (the sum of its three
gradients) and the effective weights K (w + λ/K)/(1 + λ) times the clip factor, from their w
after the step and the total norm their clip_grad_norm_ call measured.

Their code needs two shims, applied at run time, none to their source: the default dtype is
float64 while their class runs (it makes its buffers with torch.Tensor and torch.ones), and
numpy 2 no longer has np.alltrue, which their simplex projection calls (np.all is the same).
"""

import numpy as np
import torch

from .inputs import golden_inputs
from .published import import_from

REPOSITORY = "https://github.com/OptMN-Lab/sdmgrad"
BATCHES = 3  # their trainer: the main batch and two from train_aux_loader
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12,
             "why": "float64 on both sides; the same operations up to summation order (their G^T G by torch.mm, "
                    "ours accumulated per parameter; their clip norm of the vector, ours sqrt(a^T M a))"}


def _import(checkout):
    if not hasattr(np, "alltrue"):
        np.alltrue = np.all
    return import_from(checkout, "methods.weight_methods").SDMGrad


def run_theirs(sdmgrad_class, inputs, options, batches=BATCHES):
    """Their SDMGrad on the draws of golden_inputs(**inputs), `batches` consecutive draws a step
    (batches = 1: each step's one draw fed to all three of their slots; their heads then get it
    three times, so heads are not recorded)."""
    draws = golden_inputs(**inputs)
    num_tasks, shared_size = draws[0]["grads"].shape
    head_size = draws[0]["head_grads"].shape[1]
    lamda, niter, max_norm = options.get("lamda", 0.3), options.get("n_iter", 20), options.get("max_norm", 1.0)
    previous_dtype = torch.get_default_dtype()
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm_, *args, **kwargs):
        total = clip(parameters, max_norm_, *args, **kwargs)
        norms.append(float(total))
        return total

    torch.set_default_dtype(torch.float64)
    torch.nn.utils.clip_grad_norm_ = recording_clip
    try:
        method = sdmgrad_class(num_tasks, torch.device("cpu"), lamda=lamda, niter=niter, max_norm=max_norm)
        theta = torch.nn.Parameter(torch.zeros(shared_size))
        heads = [torch.nn.Parameter(torch.zeros(head_size)) for _ in range(num_tasks)]
        out = []
        for start in range(0, len(draws) - batches + 1, batches):
            group = draws[start:start + batches] if batches == BATCHES else draws[start:start + 1] * BATCHES
            for p in (theta, *heads):
                p.grad = None
            losses = torch.stack([
                torch.as_tensor(draw["losses"][k]) + torch.as_tensor(draw["grads"][k]) @ theta
                + torch.as_tensor(draw["head_grads"][k]) @ heads[k]
                for draw in group for k in range(num_tasks)])
            norms.clear()
            method.backward(losses=losses, shared_parameters=[theta], task_specific_parameters=heads)
            w = method.w.detach().clone()
            factor = min(1.0, max_norm / (norms[-1] + 1e-6)) if max_norm > 0 else 1.0
            weights = (num_tasks * w + lamda) / (1 + lamda) * factor
            out.append({"shared": [float(x) for x in theta.grad],
                        "heads": [[float(x) for x in h.grad] for h in heads] if batches == BATCHES else None,
                        "weights": [float(x) for x in weights]})
        return out
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
        torch.set_default_dtype(previous_dtype)


# (name, switch, our options, golden_inputs kwargs without steps, update steps, batches)
CASES = [
    (("K=2, 3 batches a step (draws 3s, 3s+1, 3s+2 of the inputs: main batch, extra 1, extra 2; every case with "
      "3 batches alike)"), "default", {}, {"seed": 101, "num_tasks": 2}, 5, 3),
    ("K=3, 3 batches a step", "default", {}, {"seed": 102, "num_tasks": 3}, 5, 3),
    ("K=2, small gradients (1e-4: the +1e-4 under the square root dominates M's scale)", "default", {},
     {"seed": 103, "num_tasks": 2, "scale": 1e-4}, 5, 3),
    ("K=3, small gradients (1e-4)", "default", {}, {"seed": 104, "num_tasks": 3, "scale": 1e-4}, 5, 3),
    ("K=2, large gradients (1e2: the clip to norm 1 acts)", "default", {},
     {"seed": 105, "num_tasks": 2, "scale": 1e2}, 5, 3),
    ("K=3, large gradients (1e2)", "default", {}, {"seed": 106, "num_tasks": 3, "scale": 1e2}, 5, 3),
    ("K=2, near-collinear gradients", "default", {}, {"seed": 107, "num_tasks": 2, "kind": "collinear"}, 5, 3),
    ("K=3, near-collinear gradients", "default", {}, {"seed": 108, "num_tasks": 3, "kind": "collinear"}, 5, 3),
    ("K=3, no clip (their max_norm 0)", "--sdmgrad-max-norm 0", {"max_norm": 0.0},
     {"seed": 109, "num_tasks": 3}, 5, 3),
    ("K=3, their class default lambda 0.6, 10 inner steps", "--sdmgrad-lamda 0.6 --sdmgrad-n-iter 10",
     {"lamda": 0.6, "n_iter": 10}, {"seed": 110, "num_tasks": 3}, 5, 3),
    (("K=2, one batch a step (each draw in all three of their slots; heads not compared: their trainer sums "
      "three batches' head gradients)"), "--sdmgrad-batches 1", {"batches": 1}, {"seed": 111, "num_tasks": 2}, 5, 1),
    ("K=3, one batch a step, large gradients", "--sdmgrad-batches 1", {"batches": 1},
     {"seed": 112, "num_tasks": 3, "scale": 1e2}, 5, 1),
]


def make(checkout):
    from scripts.make_goldens import commit_of
    sdmgrad_class = _import(checkout)
    cases = []
    for name, switch, options, inputs, steps, batches in CASES:
        inputs = {**inputs, "steps": steps * batches}
        cases.append({"name": name, "switch": switch, "options": options, "head_grads": None, "inputs": inputs,
                      "tolerance": TOLERANCE, "expected": run_theirs(sdmgrad_class, inputs, options, batches)})
    return [{"method": "sdmgrad",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout),
                           "file": "methods/weight_methods.py (as experiments/cityscapes/trainer.py calls it)",
                           "function": "SDMGrad.backward"},
             "cases": cases}]
