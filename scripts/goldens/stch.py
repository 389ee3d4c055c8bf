"""Goldens of stch from the authors' code (github.com/Xi-L/STCH, STCH_MTL/LibMTL/weighting/STCH.py,
a fork of LibMTL whose STCH LibMTL took over unchanged; STCH_mu 1, STCH_warmup_epoch 4 of its
LibMTL/config.py).

Through scripts/goldens/libmtl.py's stand-in (the weighting class mixed with the linear toy,
its `epoch` set from each draw): epochs 0 … 3 descend Σ log L_k, epoch 4's losses make the
nadir vector, later epochs the smoothed Tchebycheff objective. Seven epochs of two steps.
Recorded: θ.grad and the heads' .grad (the class returns no weights).
"""
from . import libmtl
from .uw import libmtl_from

TOLERANCE = {"rtol": 1e-9, "atol": 1e-15,
             "why": "the same float64 arithmetic; theirs autograd of the objective, ours its closed-form gradient"}


def run_stch(weighting, inputs, mu=1.0, warmup=4):
    out = libmtl.run(weighting.STCH, inputs, {"STCH_mu": mu, "STCH_warmup_epoch": warmup})
    return [{**step, "weights": None} for step in out]


def make(checkout):
    import torch

    from scripts.make_goldens import commit_of
    torch.set_default_dtype(torch.float64)
    cases = []
    with libmtl_from(checkout / "STCH_MTL") as weighting:
        for name, extra in (("k2", {"num_tasks": 2}), ("k3", {"num_tasks": 3}),
                            ("k3-small", {"num_tasks": 3, "scale": 1e-4}),
                            ("k3-large", {"num_tasks": 3, "scale": 1e2}),
                            ("k2-collinear", {"num_tasks": 2, "kind": "collinear"})):
            inputs = {"seed": 3301 + len(cases), "steps": 14, "steps_per_epoch": 2, **extra}
            cases.append({"name": f"{name} 7 epochs", "switch": "default", "options": {}, "head_grads": None,
                          "inputs": inputs, "tolerance": TOLERANCE, "expected": run_stch(weighting, inputs)})
        inputs = {"seed": 3311, "num_tasks": 3, "steps": 10, "steps_per_epoch": 2}
        cases.append({"name": "k3 mu=0.5 warmup=1", "switch": "--stch-mu 0.5 --stch-warmup-epochs 1",
                      "options": {"mu": 0.5, "warmup_epochs": 1}, "head_grads": None, "inputs": inputs,
                      "tolerance": TOLERANCE, "expected": run_stch(weighting, inputs, mu=0.5, warmup=1)})
    return [{"method": "stch",
             "reference": {"repository": "https://github.com/Xi-L/STCH", "commit": commit_of(checkout),
                           "file": "STCH_MTL/LibMTL/weighting/STCH.py",
                           "function": "STCH.backward (STCH_mu 1, STCH_warmup_epoch 4)"},
             "cases": cases}]
