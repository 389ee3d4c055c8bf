"""Goldens of upgrad, dualproj and imtl from torchjd (github.com/TorchJD/torchjd; the installed
package's version is recorded, and the checkout's commit): its aggregators run through its own
multi-task backward, autojac.mtl_backward then autojac.jac_to_grad, on the linear toy
L_k = c_k + g_k·f + h_k·φ_k with the feature f = θ + 0 (θ = φ = 0). Recorded: θ.grad (the
aggregated shared update), each head's .grad (torchjd gives each its own ∇L_k) and the
weights jac_to_grad returns.

IMTL-G has no authors' code and LibMTL's IMTL is the L+G hybrid (ours: imtl_l), so torchjd's
IMTLG is imtl's reference. UPGrad and DualProj are torchjd's authors' own methods.
The installed package runs (pip install torchjd==<requirements.txt's version> quadprog qpsolvers),
not the checkout, which may hold another version (the mirror's HEAD 46962c2 is 0.8.1, without
torchjd.linalg): the reference's "commit" names the package and version, "checkout" the
checkout's commit.
"""
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs

REPOSITORY = "https://github.com/TorchJD/torchjd"
EXACT = {"rtol": 1e-9, "atol": 1e-12, "why": "the same torchjd computation on the Gram matrix; ours forms M "
         "from the gradients in its own order (rounding)"}
STEPS = 2


def run(aggregator, inputs):
    from torchjd.autojac import jac_to_grad, mtl_backward
    out = []
    for draw in golden_inputs(**inputs):
        num_tasks, shared_size = draw["grads"].shape
        theta = torch.zeros(shared_size, dtype=torch.float64, requires_grad=True)
        heads = [torch.zeros(draw["head_grads"].shape[1], dtype=torch.float64, requires_grad=True)
                 for _ in range(num_tasks)]
        c, g, h = (torch.as_tensor(draw[key], dtype=torch.float64) for key in ("losses", "grads", "head_grads"))
        feature = theta + 0.0
        losses = [c[k] + g[k] @ feature + h[k] @ heads[k] for k in range(num_tasks)]
        mtl_backward(losses, features=feature, tasks_params=[[head] for head in heads], shared_params=[theta])
        weights = jac_to_grad([theta], aggregator)
        out.append({"shared": [float(x) for x in theta.grad], "heads": [[float(x) for x in hd.grad] for hd in heads],
                    "weights": [float(x) for x in weights]})
    return out


def _case(name, inputs, expected, switch="default", options=None):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": None,
            "inputs": inputs, "tolerance": EXACT, "expected": expected}


def make(checkout):
    from importlib.metadata import version

    from torchjd.aggregation import IMTLG, DualProj, UPGrad
    from torchjd.linalg import QuadprogProjector

    from scripts.make_goldens import commit_of
    installed = version("torchjd")
    goldens = []
    for index, (method, cls, file) in enumerate([("upgrad", UPGrad, "src/torchjd/aggregation/_upgrad.py"),
                                                 ("dualproj", DualProj, "src/torchjd/aggregation/_dualproj.py"),
                                                 ("imtl", IMTLG, "src/torchjd/aggregation/_imtl_g.py")]):
        cases = [_case(name, inputs, run(cls(), inputs))
                 for name, inputs in standard_inputs(seed=2601 + 100 * index, steps=STEPS)]
        if method != "imtl":
            for name, inputs in standard_inputs(seed=2651 + 100 * index, steps=STEPS)[1:3]:
                projector = QuadprogProjector(norm_eps=1e-12, reg_eps=1e-6)
                cases.append(_case(f"{name} norm_eps=1e-12 reg_eps=1e-6", inputs, run(cls(projector=projector), inputs),
                                   switch=f"--{method}-norm-eps 1e-12 --{method}-reg-eps 1e-6",
                                   options={"norm_eps": 1e-12, "reg_eps": 1e-6}))
        goldens.append({"method": method,
                        "reference": {"repository": REPOSITORY, "commit": f"PyPI torchjd=={installed} (the code that ran)",
                                      "checkout": commit_of(checkout), "file": file,
                                      "function": f"{cls.__name__} through autojac.mtl_backward and jac_to_grad"},
                        "cases": cases})
    return goldens
