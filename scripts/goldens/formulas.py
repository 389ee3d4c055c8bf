"""Goldens of gdod and hydalearn, which have no public code: hand-computed from the papers'
formulas as docs/methods.md states them, by a small numpy implementation of our own that
shares nothing with optim/weighting/ (numpy's eigh, the explicit orthogonal decomposition,
closed-form gains of the linear toy). The "checkout" argument is not read (pass any folder,
e.g. `--formulas .`).

GDOD (Dong et al., CIKM 2022): M = G Gᵀ = V Λ Vᵀ, directions with λ_j > tol·λ_max kept;
basis u_j = Gᵀ v_j / √λ_j, coefficients c_ij = √λ_j V_ij; direction j is task-shared when
its c_ij agree in sign (|V_ij| ≤ zero_tol: a zero, agreeing with either sign, or making the
direction conflicting with zeros = "conflict"); the update is Σ_{j shared} (Σ_i c_ij) u_j,
the effective weights α = V_S V_Sᵀ 1, the heads their own h_k.

HydaLearn (Verboven et al., Applied Intelligence 2023) on the linear toy
L_k(θ + δ) = c_k + g_k·δ: the gain of a step −η g_k on the main task is exactly
δ_k = η g_main·g_k (lookahead and first order alike); w_k = max(δ_k, 0) / δ_main ("main")
or K max(δ, 0) / Σ max(δ, 0) ("sum"), 1 if δ_main ≤ 0; the update Σ w_k g_k, heads h_k.
"""
import numpy as np

from .inputs import golden_inputs
from .libmtl import standard_inputs

REFERENCE = {"repository": "no public code: hand-computed from the paper's formulas",
             "commit": "none (scripts/goldens/formulas.py, our own numpy implementation)"}
EXACT = {"rtol": 1e-9, "atol": 1e-12, "why": "float64 linear algebra in another order (numpy against torch)"}


def gdod_step(grads, tol=1e-6, zero_tol=1e-6, zeros="shared"):
    eigenvalues, vectors = np.linalg.eigh(grads @ grads.T)
    keep = eigenvalues > tol * eigenvalues.max()
    eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
    roots = np.sqrt(eigenvalues)
    basis = (vectors.T @ grads) / roots[:, None]        # rows u_j
    coefficients = vectors * roots                       # c_ij
    update = np.zeros(grads.shape[1])
    shared = []
    for j in range(len(eigenvalues)):
        column = vectors[:, j]
        positive, negative = column > zero_tol, column < -zero_tol
        if zeros == "shared":
            agree = not (positive.any() and negative.any())
        else:
            agree = positive.all() or negative.all()  # a zero (neither) makes it conflicting
        if agree:
            shared.append(j)
            update += coefficients[:, j].sum() * basis[j]
    kept = vectors[:, shared]
    weights = kept @ (kept.T @ np.ones(len(grads)))
    return update, weights


def hydalearn_step(grads, main_task=0, eta=1e-2, normalise="main"):
    gains = eta * (grads @ grads[main_task])
    if gains[main_task] <= 0:
        weights = np.ones(len(grads))
    else:
        positive = np.maximum(gains, 0.0)
        weights = positive / positive[main_task] if normalise == "main" else len(grads) * positive / positive.sum()
    return weights @ grads, weights


def _run(step, inputs, **options):
    out = []
    for draw in golden_inputs(**inputs):
        update, weights = step(np.asarray(draw["grads"], dtype=np.float64), **options)
        out.append({"shared": [float(x) for x in update],
                    "heads": [[float(x) for x in row] for row in np.asarray(draw["head_grads"])],
                    "weights": [float(x) for x in weights]})
    return out


def _case(name, inputs, expected, switch="default", options=None, tolerance=EXACT):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": None,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


def gdod_golden():
    # near-collinear rows: λ_min/λ_max = 7e-7 and 4e-7, dropped by the default tol (1e-6), kept by 1e-9
    cases = [_case(name, inputs, _run(gdod_step, inputs)) for name, inputs in standard_inputs(seed=2701, steps=2)]
    name, inputs = standard_inputs(seed=2701, steps=2)[4]
    cases.append(_case(f"{name} tol=1e-9", inputs, _run(gdod_step, inputs, tol=1e-9), "--gdod-tol 1e-9",
                       {"tol": 1e-9}))
    # zero_tol 0.2 makes entries of V zeros at the second step, where the two votes differ
    name, inputs = standard_inputs(seed=2711, steps=2)[1]
    for zeros in ("shared", "conflict"):
        cases.append(_case(f"{name} zero_tol=0.2 zeros={zeros}", inputs,
                           _run(gdod_step, inputs, zero_tol=0.2, zeros=zeros),
                           f"--gdod-zero-tol 0.2 --gdod-zeros {zeros}", {"zero_tol": 0.2, "zeros": zeros}))
    return {"method": "gdod", "reference": dict(REFERENCE, paper="Dong et al. 2022, GDOD (CIKM)"), "cases": cases}


def hydalearn_golden():
    cases = []
    for name, inputs in standard_inputs(seed=2801, steps=2):
        tolerance = EXACT
        if inputs.get("scale", 1.0) < 1e-2:
            tolerance = {"rtol": 1e-5, "atol": 1e-10,
                         "why": "gradients 1e-4: the measured gain L(θ) − L(θ − η g_k) ≈ 1e-10 is a difference of "
                                "losses ≈ 1, so float64 rounding of the losses (1e-16) is ~1e-6 of it, and a weight, a ratio of two gains, "
                                "up to 1e-5 (measured: 4.5e-6 on the smallest weight, 3.9e-7 normwise; atol = 1e-6 "
                                "of the gradients' scale 1e-4); gain first_order has no such error (1e-16)"}
        cases.append(_case(name, inputs, _run(hydalearn_step, inputs), tolerance=tolerance))
    for name, inputs in standard_inputs(seed=2811, steps=2)[1:3]:
        cases.append(_case(f"{name} first_order", inputs, _run(hydalearn_step, inputs),
                           "--hydalearn-gain first_order", {"gain": "first_order"}))
    name, inputs = standard_inputs(seed=2821, steps=2)[1]
    cases.append(_case(f"{name} sum main=1", inputs, _run(hydalearn_step, inputs, main_task=1, normalise="sum"),
                       "--hydalearn-normalise sum --main-task <task 1>", {"normalise": "sum", "main_task": 1}))
    cases.append(_case(f"{name} eta=0.1", inputs, _run(hydalearn_step, inputs, eta=0.1),
                       "--hydalearn-eta 0.1", {"eta": 0.1}))
    return {"method": "hydalearn", "reference": dict(REFERENCE, paper="Verboven et al. 2023, HydaLearn "
                                                                      "(Applied Intelligence 53)"), "cases": cases}


def make(checkout):
    return [gdod_golden(), hydalearn_golden()]
