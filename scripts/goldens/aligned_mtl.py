"""Goldens of aligned_mtl from the authors' code (github.com/SamsungLabs/MTL,
code/optim/aligned/balancer.py, AlignedMTLBalancer with its defaults scale_mode 'min',
scale_decoder_grad False; its ProcrustesSolver in code/optim/aligned/solver.py).

Its step on the linear toy L_k = c_k + g_k·θ + h_k·φ_k: each loss is backpropagated alone
(get_G_wrt_shared with update_decoder_grads, so each head keeps its own h_k), the aligned
gradients are summed into θ's gradient. Recorded: θ.grad, the heads' .grad and the weights
(their `weights.sum(-1)`, the column sums of the balance transformation: ours).

Adaptations to today's torch: the solver calls torch.symeig, removed from torch since; during
the run torch.symeig is torch.linalg.eigh (both give ascending eigenvalues and their vectors).
Their rank cut-off uses torch.finfo() of the default dtype: float32, as in their training, is
kept for it (the gradients themselves are float64).
"""
from contextlib import contextmanager

import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats, grad_or_zeros, import_from, toy

REPOSITORY = "https://github.com/SamsungLabs/MTL"
FILE = "code/optim/aligned/balancer.py"
STEPS = 2
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12,
             "why": "the same eigendecomposition of the same float64 Gram matrix: rounding only"}


@contextmanager
def symeig():
    had = hasattr(torch, "symeig")
    saved = getattr(torch, "symeig", None)
    torch.symeig = lambda matrix, eigenvectors=True: torch.linalg.eigh(matrix)
    try:
        yield
    finally:
        if had:
            torch.symeig = saved
        else:
            del torch.symeig


def run_authors(cls, inputs, scale_mode="min"):
    out = []
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        balancer = cls(scale_mode=scale_mode)
        with symeig():
            balancer.step({k: losses[k] for k in range(len(heads))}, [theta], [[h] for h in heads])
        with symeig():  # the step keeps its weights to itself: the same solver call again gives them
            _, weights, _ = cls.solver.apply(torch.as_tensor(draw["grads"]).T.unsqueeze(0), scale_mode)
        out.append({"shared": grad_or_zeros(theta), "heads": [grad_or_zeros(h) for h in heads],
                    "weights": floats(weights.sum(-1))})
    return out


def make(checkout):
    from scripts.make_goldens import commit_of
    module = import_from(checkout / "code", "optim.aligned.balancer", "optim")
    cls = module.AlignedMTLBalancer
    cls.solver = module.ProcrustesSolver
    cases = []
    for name, inputs in standard_inputs(seed=2901, steps=STEPS):
        cases.append({"name": name, "switch": "default", "options": {}, "head_grads": None, "inputs": inputs,
                      "tolerance": TOLERANCE, "expected": run_authors(cls, inputs)})
    for mode in ("median", "rmse"):
        name, inputs = standard_inputs(seed=2911, steps=STEPS)[1]
        cases.append({"name": f"{name} scale_mode={mode}", "switch": f"--aligned-mtl-scale-mode {mode}",
                      "options": {"scale_mode": mode}, "head_grads": None, "inputs": inputs,
                      "tolerance": TOLERANCE, "expected": run_authors(cls, inputs, mode)})
    return [{"method": "aligned_mtl",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "AlignedMTLBalancer.step (scale_mode 'min')"},
             "cases": cases}]
