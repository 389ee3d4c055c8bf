"""Goldens of cagrad from the authors' code (github.com/Cranial-XIX/CAGrad): the function
`cagrad` of cityscapes/utils.py (two tasks: a bounded scalar search) and of nyuv2/utils.py
(three tasks: SLSQP), as their trainers call it, cagrad(grads, alpha, rescale=1), followed by
overwrite_grad's "× K to match the sum loss"; c = 0.4 as their run.sh.

Both functions are nested in their trainer functions, so the runner reads the file from the
checkout, takes that one function definition out of its syntax tree and executes it with the
imports of the file (numpy, torch, scipy.optimize); nothing of it is stored. On the linear toy
the heads keep their own h_k (each loss is backpropagated alone, only the shared gradients are
overwritten). Recorded: θ's gradient K·cagrad(G) and the heads; the weights are not compared
(the authors' function returns the update alone).
"""
import ast

import numpy as np
import scipy.optimize
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats

REPOSITORY = "https://github.com/Cranial-XIX/CAGrad"
FILES = {2: "cityscapes/utils.py", 3: "nyuv2/utils.py"}
C = 0.4
STEPS = 2
# Normwise: atol is this times the case's largest expected value (elements near 0 included).
TOLERANCE = {
    2: {"rtol": 1e-4, "why": "scipy's bounded scalar search stops at xatol 1e-5 in the weight x of the two-task "
                             "problem, ours (torchjd's conic solve) is exact: measured 3.4e-5 normwise relative"},
    3: {"rtol": 1e-3, "why": "scipy's SLSQP at its default ftol 1e-6 stops with the weights off by about 1e-4 "
                             "(the objective is flat at its minimum), ours is exact: measured 2.1e-4 normwise relative"},
}


def authors_cagrad(checkout, num_tasks):
    """The function `cagrad` of the authors' trainer file for `num_tasks` tasks."""
    tree = ast.parse((checkout / FILES[num_tasks]).read_text())
    found = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "cagrad"]
    namespace = {"np": np, "torch": torch, "minimize": scipy.optimize.minimize,
                 "minimize_scalar": scipy.optimize.minimize_scalar}
    exec(compile(ast.Module(body=[found[0]], type_ignores=[]), str(checkout / FILES[num_tasks]), "exec"), namespace)  # noqa: S102 (the published function, run from the checkout)
    return namespace["cagrad"]


def run_authors(checkout, inputs, c=C):
    out = []
    for draw in golden_inputs(**inputs):
        grads = torch.as_tensor(draw["grads"], dtype=torch.float64)
        num_tasks = len(grads)
        update = authors_cagrad(checkout, num_tasks)(grads.t().contiguous(), c, rescale=1) * num_tasks
        out.append({"shared": floats(update), "heads": [floats(h) for h in draw["head_grads"]], "weights": None})
    return out


def _case(name, inputs, expected, switch="default", options=None):
    tolerance = dict(TOLERANCE[inputs["num_tasks"]])
    largest = max(abs(x) for step in expected for x in step["shared"])
    tolerance["atol"] = tolerance["rtol"] * largest
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": None,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


def make(checkout):
    from scripts.make_goldens import commit_of
    torch.set_default_dtype(torch.float64)  # their torch.Tensor(w) of the weights: float64 here
    cases = [_case(name, inputs, run_authors(checkout, inputs))
             for name, inputs in standard_inputs(seed=2801, steps=STEPS) if name in USED]
    name, inputs = standard_inputs(seed=2811, steps=STEPS)[1]
    cases.append(_case(f"{name} c=0.6", inputs, run_authors(checkout, inputs, c=0.6), switch="--cagrad-c 0.6",
                       options={"c": 0.6}))
    return [{"method": "cagrad",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": " and ".join(FILES.values()),
                           "function": "cagrad(grads, alpha=0.4, rescale=1) × K (overwrite_grad)"},
             "cases": cases}]


# k3-small is left out: the authors' 1e-8 terms (in ‖g_0‖ and c·‖g_0‖) are absolute, and at
# gradients 1e-4 (Σ_k‖g_k‖² ≈ 1e-7) they change the update (docs/methods.md, "CAGrad").
USED = ("k2", "k3", "k3-large", "k2-collinear")
