"""Goldens of fairgrad from the authors' code (github.com/OptMN-Lab/fairgrad,
methods/weight_methods.py, class FairGrad), with its default max_norm = 1 of
experiments/utils.py.

The authors' backward on the linear toy L_k = c_k + g_k·θ + h_k·φ_k (θ = φ = 0): each loss is
backpropagated alone (each head gets its own h_k), the shared gradients are replaced by
K Σ_k w_k g_k (overwrite_grad, "to match the sum loss"), then clip_grad_norm_(θ, max_norm).
Recorded: θ.grad, each head's .grad; the weights only where they mean ours (the switches).

The other conventions come from the same solve, the authors' FairGrad.fairgrad (LibMTL's
FairGrad and torchjd's FairGradWeighting solve the same least-squares problem from the same
start): `--fairgrad-times-tasks false --fairgrad-max-norm 0` with --head-grads weighted is
LibMTL's backward of Σ w_k L_k (heads w_k h_k), with --head-grads own torchjd's mtl_backward.
The package `methods` is imported under its name and taken out of sys.modules again
(published.import_from: the Nash-MTL and SDMGrad repositories have one of the same name).
"""
import numpy as np
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats, import_from, toy

REPOSITORY = "https://github.com/OptMN-Lab/fairgrad"
FILE = "methods/weight_methods.py"
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12,
             "why": "the same scipy least_squares solve from the same start (measured 2e-14); "
                    "torchjd's objective writes x^(-1/α) for (1/x)^(1/α), so the iterates differ by rounding"}
STEPS = 3
LIBMTL = "--fairgrad-times-tasks false --fairgrad-max-norm 0"


def authors_class(checkout):
    return import_from(checkout, "methods.weight_methods").FairGrad


def run_authors(cls, inputs, alpha=1.0, max_norm=1.0):
    out = []
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        method = cls(len(heads), device=torch.device("cpu"), alpha=alpha, max_norm=max_norm)
        method.backward(losses, shared_parameters=[theta], task_specific_parameters=heads)
        out.append({"shared": floats(theta.grad), "heads": [floats(h.grad) for h in heads], "weights": None})
    return out


def run_solve(cls, inputs, alpha, heads):
    """The authors' solve alone: Σ w_k g_k, the heads w_k h_k (LibMTL) or h_k (torchjd), w."""
    out = []
    for draw in golden_inputs(**inputs):
        grads = torch.as_tensor(draw["grads"], dtype=torch.float64)
        method = cls(len(grads), device=torch.device("cpu"), alpha=alpha)
        update, _, weights = method.fairgrad(grads.t(), alpha=alpha)
        head_grads = np.asarray(draw["head_grads"])
        if heads == "weighted":
            head_grads = weights[:, None] * head_grads
        out.append({"shared": floats(update), "heads": [[float(x) for x in row] for row in head_grads],
                    "weights": [float(x) for x in weights]})
    return out


def _case(name, inputs, expected, switch="default", options=None, head_grads=None):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": head_grads,
            "inputs": inputs, "tolerance": TOLERANCE, "expected": expected}


def make(checkout):
    torch.set_default_dtype(torch.float64)  # the authors' torch.Tensor(...) buffers: float64 here
    from scripts.make_goldens import commit_of
    cls = authors_class(checkout)
    cases = []
    for name, inputs in standard_inputs(seed=2501, steps=STEPS):
        cases.append(_case(name, inputs, run_authors(cls, inputs)))
    name, inputs = standard_inputs(seed=2511, steps=STEPS)[1]
    cases.append(_case(f"{name} alpha=2", inputs, run_authors(cls, inputs, alpha=2.0),
                       switch="--fairgrad-alpha 2", options={"alpha": 2.0}))
    cases.append(_case(f"{name} max_norm=0", inputs, run_authors(cls, inputs, max_norm=0.0),
                       switch="--fairgrad-max-norm 0", options={"max_norm": 0.0}))
    libmtl = {"times_tasks": False, "max_norm": 0.0}
    for name, inputs in standard_inputs(seed=2521, steps=STEPS):
        cases.append(_case(f"{name} libmtl", inputs, run_solve(cls, inputs, 1.0, "weighted"),
                           switch=f"{LIBMTL} --head-grads weighted", options=libmtl, head_grads="weighted"))
    name, inputs = standard_inputs(seed=2531, steps=STEPS)[1]
    cases.append(_case(f"{name} torchjd", inputs, run_solve(cls, inputs, 1.0, "own"),
                       switch=f"{LIBMTL} --head-grads own", options=libmtl, head_grads="own"))
    return [{"method": "fairgrad",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "FairGrad.backward (max_norm 1.0 of experiments/utils.py)",
                           "switches": {LIBMTL: "the same solve (FairGrad.fairgrad) as LibMTL's FairGrad.py and "
                                               "torchjd's FairGradWeighting; heads as LibMTL (weighted) or torchjd "
                                               "(own)"}},
             "cases": cases}]
