"""Goldens of mgda from the authors' code (github.com/isl-org/MultiObjectiveOptimization,
multi_task/min_norm_solvers.py: MinNormSolver.find_min_norm_element and gradient_normalizers,
called as multi_task/train_multi_task.py does with the parameter gradients, i.e.
use_approximation false, and normalization_type 'loss+' of its sample.json).

Per step, as that training loop on the linear toy L_k = c_k + g_k·θ + h_k·φ_k: each task's
gradient of θ, divided by gradient_normalizers' factor (L_k‖g_k‖ for 'loss+'), goes to the
solver; the loss Σ_k α_k L_k is backpropagated (θ gets Σ α_k g_k, head k gets α_k h_k).
Switches from the same solver: the other normalisations ('none', 'l2', 'loss'). The switch
--mgda-convention published (the Nash-MTL/FAMO code's MGDA) comes from that code's own class:
scripts/goldens/nash_mtl.py adds its cases ("extends").

One adaptation to today's numpy: the solver's inner products are 0-d torch tensors, which
numpy 2 no longer sums in its loop (np.sum of tensors), so _min_norm_element_from2 is given
and returns Python floats; the numbers are the same.
"""
import numpy as np
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats, import_from, toy

REPOSITORY = "https://github.com/isl-org/MultiObjectiveOptimization"
FILE = "multi_task/min_norm_solvers.py"
STEPS = 2
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12,
             "why": "the same algorithm on the Gram matrix (theirs sums inner products of the gradients): "
                    "rounding only, measured below 3e-12 in α on 200 random cases"}

COLLINEAR = {"rtol": 1e-7, "atol": 1e-12,
             "why": "near-collinear gradients: across the hull the objective's curvature is about 1e-6 of M's, so "
                    "the rounding of the inner products (theirs summed from the vectors, ours from the float64 Gram "
                    "matrix) moves α by up to 2e-9 relative (measured, 'l2' at K = 3)"}


def authors_solver(checkout):
    module = import_from(checkout / "multi_task", "min_norm_solvers")
    solver = module.MinNormSolver
    two_point = solver._min_norm_element_from2
    if not getattr(two_point, "as_floats", False):
        def as_floats(v1v1, v1v2, v2v2):
            return tuple(float(x) for x in two_point(float(v1v1), float(v1v2), float(v2v2)))
        as_floats.as_floats = True
        solver._min_norm_element_from2 = as_floats
    return solver, module.gradient_normalizers


def run_authors(checkout, inputs, normalization="loss+"):
    solver, normalizers = authors_solver(checkout)
    out = []
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        num_tasks = len(heads)
        grads = {t: [torch.autograd.grad(losses[t], [theta], retain_graph=True)[0]] for t in range(num_tasks)}
        loss_data = {t: float(losses[t].detach()) for t in range(num_tasks)}
        divisors = normalizers(grads, loss_data, normalization)
        vecs = [[g / float(divisors[t]) for g in grads[t]] for t in range(num_tasks)]
        solution, _ = solver.find_min_norm_element(vecs)
        alpha = np.asarray(solution, dtype=np.float64)
        sum(float(alpha[t]) * losses[t] for t in range(num_tasks)).backward()
        out.append({"shared": floats(theta.grad), "heads": [floats(h.grad) for h in heads], "weights": floats(alpha)})
    return out


def _case(name, inputs, expected, switch="default", options=None):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": None, "inputs": inputs,
            "tolerance": COLLINEAR if "collinear" in name else TOLERANCE, "expected": expected}


def make(checkout):
    from scripts.make_goldens import commit_of
    torch.set_default_dtype(torch.float64)
    cases = [_case(name, inputs, run_authors(checkout, inputs))
             for name, inputs in standard_inputs(seed=2701, steps=STEPS)]
    for normalization in ("none", "l2", "loss"):
        standard = standard_inputs(seed=2711, steps=STEPS)
        for name, inputs in standard[:2] + standard[4:] + [
                ("k3-collinear", {"seed": 2716, "num_tasks": 3, "steps": STEPS, "kind": "collinear"})]:
            cases.append(_case(f"{name} normalization={normalization}", inputs,
                               run_authors(checkout, inputs, normalization),
                               switch=f"--mgda-normalization {normalization}", options={"normalization": normalization}))
    return [{"method": "mgda",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "MinNormSolver.find_min_norm_element after gradient_normalizers('loss+'), "
                                       "as multi_task/train_multi_task.py calls them"},
             "cases": cases}]
