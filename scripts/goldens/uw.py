"""Goldens of uw from LibMTL (github.com/median-research-group/LibMTL, LibMTL/weighting/UW.py;
no code of the paper's authors is public): loss_scale s from −0.5, trained, as a parameter of
LibMTL's model, by the network's optimizer.

Through scripts/goldens/libmtl.py's stand-in (LibMTL's weighting class mixed with the linear
toy): each step UW.backward(losses) backpropagates Σ_k (L_k / (2e^{s_k}) + s_k / 2), then the
network's optimizer steps s. Here that optimizer is an Adam at the case's lr (1e-3) with no
weight decay, as the network's Adam of this repository (LibMTL's default adds weight decay 1e-5;
this repository's optimizers have none). Recorded: θ.grad, the heads' .grad and UW's weights
1 / (2e^{s_k}), over six consecutive steps.

Switch --uw-init 0 --uw-trainer own: the Nash-MTL/FAMO trainers' Uncertainty (the same objective,
s from 0, in the optimizer's own parameter group at lr 0.025), made by the same class with s
set to 0 and an Adam at 0.025.
"""
from contextlib import contextmanager

import torch

from . import libmtl
from .published import packages_set_aside

STEPS = 6
TOLERANCE = {"rtol": 1e-9, "atol": 1e-15, "why": "the same float64 arithmetic (Adam on the same gradient of s)"}


@contextmanager
def libmtl_from(checkout):
    """LibMTL's weighting package from `checkout` (libmtl._import's bare package), and the
    modules named LibMTL from before afterwards (the STCH authors' code is a fork of LibMTL)."""
    with packages_set_aside("LibMTL"):
        yield libmtl._import(checkout)


def run_uw(weighting, inputs, init=None, lr=libmtl.LR):
    cls = weighting.UW
    if init is not None:
        class FromInit(cls):
            def init_param(self):
                super().init_param()
                with torch.no_grad():
                    self.loss_scale.fill_(init)
        cls = FromInit
    return libmtl.run(cls, inputs, {}, own_optimizer=lambda params: torch.optim.Adam(params, lr=lr))


def make(checkout):
    from scripts.make_goldens import commit_of
    torch.set_default_dtype(torch.float64)  # loss_scale: float64 here
    cases = []
    with libmtl_from(checkout) as weighting:
        for name, inputs in libmtl.standard_inputs(seed=3201, steps=STEPS):
            cases.append({"name": name, "switch": "default", "options": {}, "head_grads": None, "lr": libmtl.LR,
                          "inputs": inputs, "tolerance": TOLERANCE, "expected": run_uw(weighting, inputs)})
        name, inputs = libmtl.standard_inputs(seed=3211, steps=STEPS)[1]
        cases.append({"name": f"{name} nash-mtl/famo", "switch": "--uw-init 0 --uw-trainer own",
                      "options": {"init": 0.0, "trainer": "own"}, "head_grads": None, "lr": libmtl.LR,
                      "inputs": inputs, "tolerance": TOLERANCE,
                      "expected": run_uw(weighting, inputs, init=0.0, lr=0.025)})
    return [{"method": "uw",
             "reference": {"repository": libmtl.REPOSITORY, "commit": commit_of(checkout),
                           "file": "LibMTL/weighting/UW.py",
                           "function": "UW.backward, s from −0.5, stepped by the network's Adam",
                           "switches": {"--uw-init 0 --uw-trainer own":
                                        "the Uncertainty of the Nash-MTL and FAMO code (github.com/AvivNavon/nash-mtl "
                                        "methods/weight_methods.py): the same objective, s from 0, Adam at 0.025"}},
             "cases": cases}]
