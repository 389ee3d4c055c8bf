"""Goldens of famo from the authors' code (github.com/Cranial-XIX/FAMO,
methods/weight_methods.py, class FAMO with the CityScapes trainer's gamma 0.01 and
w_lr 0.025 of experiments/utils.py).

One instance per case, as in training. Each step on the linear toy L_k = c_k + g_k·θ + h_k·φ_k
(θ = φ = 0): FAMO.backward (its clip_grad_norm_ runs before the backward, on no gradient: no
effect), a plain SGD step of θ and the heads (lr 1e-3 / scale², the case's lr),
the losses again at the new parameters and FAMO.update with them, as the trainer's extra
forward. Recorded: θ.grad, the heads' .grad and the effective weights (z_k / D_k) / Σ_j z_j / D_j
of the loss Σ_k z_k log D_k / c that it backpropagates.

Also the cases of `--dwa-mode iteration` for dwa's golden (its default comes from MTAN's code,
scripts/goldens/mtan.py): the same file's DynamicWeightAverage, which produced the DWA rows of
the FAMO and Nash-MTL CityScapes tables; they extend that golden ("extends", scripts/make_goldens.py).
"""
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats, import_from, toy

REPOSITORY = "https://github.com/Cranial-XIX/FAMO"
FILE = "methods/weight_methods.py"
STEPS = 6
LR = 1e-3
TOLERANCE = {"rtol": 1e-9, "atol": 1e-15,
             "why": "the same arithmetic; theirs autograd of Σ z log D / c, ours the closed form: rounding only"}


def lr_of(inputs):
    """The SGD step: 1e-3 / scale², so the losses move alike at every gradient scale (and stay positive)."""
    return LR / inputs.get("scale", 1.0) ** 2


def run_authors(cls, inputs, gamma=0.01, w_lr=0.025):
    out = []
    method = None
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        if method is None:
            method = cls(n_tasks=len(heads), device=torch.device("cpu"), gamma=gamma, w_lr=w_lr)
        _, extra = method.backward(losses=losses, shared_parameters=[theta], task_specific_parameters=heads)
        z = extra["weights"].detach()
        scaled = z / (losses.detach() + 1e-8)
        out.append({"shared": floats(theta.grad), "heads": [floats(h.grad) for h in heads],
                    "weights": floats(scaled / scaled.sum())})
        with torch.no_grad():  # SGD, then the losses at the new parameters
            for p in [theta, *heads]:
                p -= lr_of(inputs) * p.grad
            c, g, h = (torch.as_tensor(draw[key], dtype=torch.float64) for key in ("losses", "grads", "head_grads"))
            after = torch.stack([c[k] + g[k] @ theta + h[k] @ heads[k] for k in range(len(heads))])
        method.update(after)
    return out


def run_dwa(cls, inputs, window):
    """The FAMO code's DynamicWeightAverage (the Nash-MTL code's, the same): each step
    backpropagates the mean of its float32 weights times the losses; recorded with the
    effective weights (theirs / K)."""
    out = []
    method = None
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        if method is None:
            method = cls(n_tasks=len(heads), device=torch.device("cpu"), iteration_window=window)
        loss, extra = method.get_weighted_loss(losses)
        loss.backward()
        out.append({"shared": floats(theta.grad), "heads": [floats(h.grad) for h in heads],
                    "weights": floats(extra["weights"].double() / len(heads))})
    return out


def dwa_tolerance(expected):
    """Normwise: atol is 1e-6 of the case's largest value (sums of weighted gradients cancel)."""
    largest = max(abs(x) for step in expected for x in step["shared"] + [y for h in step["heads"] for y in h])
    return {"rtol": 1e-6, "atol": 1e-6 * largest,
            "why": "their loss window and weights are float32, ours float64: measured 2.4e-7 normwise"}


def dwa_iteration_cases(checkout):
    """--dwa-mode iteration against the FAMO code's DynamicWeightAverage (window 3 to keep the
    golden small, and the default 25), K = 2 and 3, through the window's start."""
    cls = import_from(checkout, "methods.weight_methods").DynamicWeightAverage
    cases = []
    for name, num_tasks, window, scale in (("k2 window=3", 2, 3, 1.0), ("k3 window=3", 3, 3, 1.0),
                                           ("k3-small window=3", 3, 3, 1e-4), ("k3 window=25", 3, 25, 1.0)):
        inputs = {"seed": 3021 + len(cases), "num_tasks": num_tasks, "steps": 2 * window + 4, "scale": scale}
        cases.append({"name": f"{name} iteration", "switch": f"--dwa-mode iteration --dwa-window {window}",
                      "options": {"mode": "iteration", "window": window}, "head_grads": None, "inputs": inputs,
                      "expected": run_dwa(cls, inputs, window)})
        cases[-1]["tolerance"] = dwa_tolerance(cases[-1]["expected"])
    return cases


def make(checkout):
    from scripts.make_goldens import commit_of
    torch.set_default_dtype(torch.float64)  # their logits w: float64 here
    cls = import_from(checkout, "methods.weight_methods").FAMO
    cases = [{"name": name, "switch": "default", "options": {}, "head_grads": None, "lr": lr_of(inputs),
              "inputs": inputs, "tolerance": TOLERANCE, "expected": run_authors(cls, inputs)}
             for name, inputs in standard_inputs(seed=3001, steps=STEPS)]
    name, inputs = standard_inputs(seed=3011, steps=STEPS)[1]
    cases.append({"name": f"{name} gamma=0.001 lr=0.1", "switch": "--famo-gamma 0.001 --famo-lr 0.1",
                  "options": {"gamma": 0.001, "lr": 0.1}, "head_grads": None, "lr": lr_of(inputs),
                  "inputs": inputs, "tolerance": TOLERANCE, "expected": run_authors(cls, inputs, gamma=0.001, w_lr=0.1)})
    iteration = "--dwa-mode iteration"
    return [{"method": "famo",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "FAMO.backward and FAMO.update (gamma 0.01, w_lr 0.025 of experiments/utils.py)"},
             "cases": cases},
            {"method": "dwa", "extends": True,  # the cases of a switch, added to the MTAN runner's golden
             "reference": {"switches": {iteration: f"{REPOSITORY} {commit_of(checkout)} {FILE} DynamicWeightAverage "
                                                   "(iteration_window 25, temp 2; the Nash-MTL code's is the same)"}},
             "cases": dwa_iteration_cases(checkout)}]
