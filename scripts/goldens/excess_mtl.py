"""Goldens of excess_mtl from the authors' code (github.com/yifei-he/ExcessMTL: their LibMTL
fork, LibMTL/LibMTL/weighting/ExcessMTL.py, equal to LibMTL's but for a docstring) and, for
`--excess-mtl-convention torchjd`, from torchjd's ExcessMTLWeighting (the installed torchjd
package, its version recorded).

The authors' class runs in float64 in scripts/goldens/libmtl.py's stand-in (the linear toy
mixed into the weighting class, LibMTL's way): its backward computes the per-task gradients
of θ, updates its weights and backpropagates Σ w_k L_k, so θ.grad is the shared update and
each head's .grad its w_k h_k. The fork's package is imported under its own name and taken
out of sys.modules again, so LibMTL's runner in the same process finds its own.
torchjd's weighting is called on each step's (K, P) gradients; its shared update is Σ w_k g_k
and each head keeps its own h_k (torchjd's mtl_backward).
"""
import importlib
import sys
import types

import numpy as np
import torch

from .inputs import golden_inputs
from .libmtl import run, standard_inputs
from .published import packages_set_aside

REPOSITORY = "https://github.com/yifei-he/ExcessMTL"
FILE = "LibMTL/LibMTL/weighting/ExcessMTL.py"
EXACT = {"rtol": 1e-9, "atol": 1e-12, "why": "the same float64 arithmetic (a softmax in log space instead of "
         "exp and a division: rounding)"}
STEPS = 6
ETA = 1e-2  # the fork's config.py default of --robust_step_size


def authors_class(checkout):
    """The fork's ExcessMTL class, its LibMTL package imported alone and then forgotten."""
    with packages_set_aside("LibMTL"):
        package = types.ModuleType("LibMTL")
        package.__path__ = [str(checkout / "LibMTL" / "LibMTL")]
        sys.modules["LibMTL"] = package
        sys.modules["LibMTL.weighting"] = types.ModuleType("LibMTL.weighting")  # not its __init__ (every method)
        sys.modules["LibMTL.weighting"].__path__ = [str(checkout / "LibMTL" / "LibMTL" / "weighting")]
        return with_encoder(importlib.import_module("LibMTL.weighting.ExcessMTL").ExcessMTL)


def with_encoder(cls):
    """The class with LibMTL's `encoder` (the shared network, whose zero_grad the backward
    calls before Σ w_k L_k): here the toy's θ."""

    class WithEncoder(cls):
        @property
        def encoder(self):
            return types.SimpleNamespace(zero_grad=self.zero_grad_share_params)

    return WithEncoder


def run_torchjd(inputs, robust_step_size, n_warmup_steps=0):
    from torchjd.aggregation import ExcessMTLWeighting
    weighting = ExcessMTLWeighting(robust_step_size=robust_step_size, n_warmup_steps=n_warmup_steps)
    out = []
    for draw in golden_inputs(**inputs):
        grads = torch.as_tensor(draw["grads"], dtype=torch.float64)
        weights = weighting(grads)
        out.append({"shared": [float(x) for x in weights @ grads],
                    "heads": [[float(x) for x in row] for row in np.asarray(draw["head_grads"])],
                    "weights": [float(x) for x in weights]})
    return out


def _case(name, inputs, expected, switch="default", options=None, head_grads=None, tolerance=EXACT):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": head_grads,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


def make(checkout):
    torch.set_default_dtype(torch.float64)  # the class makes its weights with the default dtype
    from importlib.metadata import version

    import torchjd

    from scripts.make_goldens import commit_of
    cls = authors_class(checkout)
    cases = []
    for name, inputs in standard_inputs(seed=2401, steps=STEPS):
        cases.append(_case(name, inputs, run(cls, inputs, {"robust_step_size": ETA})))
    name, inputs = standard_inputs(seed=2411, steps=STEPS)[1]
    cases.append(_case(f"{name} eta=1", inputs, run(cls, inputs, {"robust_step_size": 1.0}),
                       switch="--excess-mtl-robust-step-size 1", options={"robust_step_size": 1.0}))
    torchjd_version = f"torchjd {version('torchjd')} ({torchjd.__name__}.aggregation.ExcessMTLWeighting)"
    for name, inputs in standard_inputs(seed=2421, steps=STEPS):
        cases.append(_case(f"{name} torchjd", inputs, run_torchjd(inputs, ETA),
                           switch="--excess-mtl-convention torchjd --head-grads own",
                           options={"convention": "torchjd"}, head_grads="own"))
    name, inputs = standard_inputs(seed=2431, steps=STEPS)[1]
    cases.append(_case(f"{name} torchjd warmup=2 eta=1", inputs, run_torchjd(inputs, 1.0, 2),
                       switch="--excess-mtl-convention torchjd --excess-mtl-n-warmup-steps 2 --head-grads own",
                       options={"convention": "torchjd", "n_warmup_steps": 2, "robust_step_size": 1.0},
                       head_grads="own"))
    return [{"method": "excess_mtl",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "ExcessMTL.backward",
                           "switches": {"--excess-mtl-convention torchjd": torchjd_version}},
             "cases": cases}]
