"""Goldens of config from the authors' code (github.com/tum-pbs/ConFIG, conflictfree/grad_operator.py,
ConFIG_update with its defaults: EqualWeight, ProjectionLength, use_least_square=True), run in
float64 on each step's (K, P) shared gradients. The authors' code updates one parameter vector
and knows no heads: the heads are not compared (ours give each its own ∇L_k), nor the weights
(ConFIG is no weighting). The preference-vector switch passes the authors' weight model the
same vector (a WeightModel whose get_weights returns it).
"""
import importlib

import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import checkout_on_path

REPOSITORY = "https://github.com/tum-pbs/ConFIG"
FILE = "conflictfree/grad_operator.py"
STEPS = 2
TOLERANCE = {"rtol": 1e-9, "atol": 1e-12,
             "why": "the authors' lstsq (LAPACK gelsy) and torchjd's pinv (an SVD) give the same minimum-norm "
                    "direction up to rounding (measured 6e-13 on near-collinear rows, 1e-15 otherwise)"}


def authors_module(checkout):
    with checkout_on_path(checkout, "conflictfree"):
        return importlib.import_module("conflictfree.grad_operator"), importlib.import_module("conflictfree.weight_model")


def run(module, weight_models, inputs, pref=None):
    if pref is None:
        weight_model = weight_models.EqualWeight()
    else:
        class Preference(weight_models.WeightModel):
            def get_weights(self, gradients, losses=None, device=None):
                return torch.tensor(pref, dtype=gradients.dtype, device=gradients.device)
        weight_model = Preference()
    out = []
    for draw in golden_inputs(**inputs):
        grads = torch.as_tensor(draw["grads"], dtype=torch.float64)
        update = module.ConFIG_update(grads, weight_model=weight_model)
        out.append({"shared": [float(x) for x in update], "heads": None, "weights": None})
    return out


def make(checkout):
    torch.set_default_dtype(torch.float64)  # EqualWeight's torch.ones: float64 like the gradients
    from scripts.make_goldens import commit_of
    module, weight_models = authors_module(checkout)
    cases = []
    for name, inputs in standard_inputs(seed=2901, steps=STEPS):
        cases.append({"name": name, "switch": "default", "options": {}, "head_grads": None, "inputs": inputs,
                      "tolerance": TOLERANCE, "expected": run(module, weight_models, inputs)})
    name, inputs = standard_inputs(seed=2911, steps=STEPS)[1]
    cases.append({"name": f"{name} pref=1,2,3", "switch": "--config-pref-vector 1,2,3",
                  "options": {"pref_vector": "1,2,3"}, "head_grads": None, "inputs": inputs,
                  "tolerance": TOLERANCE,
                  "expected": run(module, weight_models, inputs, pref=[1.0, 2.0, 3.0])})
    return [{"method": "config",
             "reference": {"repository": REPOSITORY, "commit": commit_of(checkout), "file": FILE,
                           "function": "ConFIG_update (EqualWeight, ProjectionLength, use_least_square=True)"},
             "cases": cases}]
