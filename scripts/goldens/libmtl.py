"""Goldens from LibMTL (github.com/median-research-group/LibMTL): its weighting classes run on
the seeded inputs of scripts/goldens/inputs.py, in float64, through a stand-in model.

LibMTL mixes a weighting class into its model (the trainer's MTLmodel inherits from both). The
stand-in here is that mix: the weighting class plus the linear toy of scripts/goldens/ours.py,
L_k = c_k + g_k·θ + h_k·φ_k at θ = φ = 0 (reset before every step), with the members the
weighting classes use: task_num, device, rep_grad, get_share_params(),
zero_grad_share_params(), epoch and train_loss_buffer (GradNorm), rep (GradDrop). A step is
LibMTL's: `weighting.backward(losses, **kwargs)` fills .grad; recorded are θ.grad (the shared
update), each head's .grad and the weights the class returns.

Methods whose parameters LibMTL trains with the network's optimizer (GradNorm's and IMTL's
loss_scale) get that optimizer here: torch.optim.SGD(lr) over the weighting's own parameters,
stepped after every backward like the trainer's optimizer.step() (θ and φ are reset anyway).

Random draws (RLW, PCGrad, GradVac, GradDrop) come from the global RNGs, seeded with the case's
`seed` option before the first step: torch.manual_seed for torch's draws, random.seed for
Python's shuffles.
"""
import random
import sys
import types

import numpy as np
import torch

from .inputs import golden_inputs

REPOSITORY = "https://github.com/median-research-group/LibMTL"
LR = 1e-3  # the case's lr, the same in ours.py (DEFAULT_LR)


def _import(checkout):
    """LibMTL's weighting modules without LibMTL/__init__.py (which imports the trainer and
    torch_geometric): a bare package object pointing at the checkout's LibMTL folder."""
    if "LibMTL" not in sys.modules:
        package = types.ModuleType("LibMTL")
        package.__path__ = [str(checkout / "LibMTL")]
        sys.modules["LibMTL"] = package
    import importlib
    return importlib.import_module("LibMTL.weighting")


def stand_in(weighting_class, num_tasks, shared_size, head_size, epochs=1):
    """An instance of LibMTL's `weighting_class` mixed with the linear toy."""

    class Toy(weighting_class):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.zeros(shared_size, dtype=torch.float64))
            self.heads = torch.nn.ParameterList(
                torch.nn.Parameter(torch.zeros(head_size, dtype=torch.float64)) for _ in range(num_tasks))
            self.task_num, self.device, self.rep_grad = num_tasks, torch.device("cpu"), False
            self.task_name = [f"t{k}" for k in range(num_tasks)]
            self.epoch = 0
            self.train_loss_buffer = np.zeros([num_tasks, epochs])

        def get_share_params(self):
            return [self.theta]

        def zero_grad_share_params(self):
            if self.theta.grad is not None:
                self.theta.grad.zero_()

        def toy_params(self):
            return [self.theta, *self.heads]

        def own_params(self):
            return [p for name, p in self.named_parameters() if not name.startswith(("theta", "heads"))]

        def losses(self, draw):
            with torch.no_grad():
                for p in self.toy_params():
                    p.zero_()
                    p.grad = None
            c, g, h = (torch.as_tensor(draw[key], dtype=torch.float64) for key in ("losses", "grads", "head_grads"))
            return torch.stack([c[k] + g[k] @ self.theta + h[k] @ head for k, head in enumerate(self.heads)])

    return Toy()


def run(weighting_class, inputs, kwargs, seed=0, lr=LR, rep=False):
    """LibMTL's `weighting_class` on golden_inputs(**inputs): a list of per-step dicts
    {shared, heads, weights} (ours.run_ours's format)."""
    draws = golden_inputs(**inputs)
    num_tasks, shared_size = draws[0]["grads"].shape
    head_size = draws[0]["head_grads"].shape[1]
    epochs = draws[-1]["epoch"] + 1
    model = stand_in(weighting_class, num_tasks, shared_size, head_size, epochs)
    model.init_param()
    own = model.own_params()
    optimizer = torch.optim.SGD(own, lr=lr) if own else None
    torch.manual_seed(seed)
    random.seed(seed)
    out, sums, count = [], np.zeros(num_tasks), 0
    for draw in draws:
        if draw["epoch"] != model.epoch:  # the trainer's end of epoch: the epoch's mean losses
            model.train_loss_buffer[:, model.epoch] = sums / count
            model.epoch, sums, count = draw["epoch"], np.zeros(num_tasks), 0
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=False)
        losses = model.losses(draw)
        sums, count = sums + losses.detach().numpy(), count + 1
        if rep:
            weights = _rep_backward(model, draw, kwargs)
        else:
            weights = model.backward(losses, **kwargs)
        if optimizer is not None:
            optimizer.step()
        out.append({"shared": _values(model.theta.grad, shared_size),
                    "heads": [_values(head.grad, head_size) for head in model.heads],
                    "weights": None if weights is None else [float(w) for w in np.asarray(weights).reshape(-1)]})
    return out


def _rep_backward(model, draw, kwargs):
    """GradDrop's representation gradients (rep_grad = True): the representation is
    rep = 1 + θ (one sample, positive, so sign(rep) = 1), L_k = c_k + g_k·rep + h_k·φ_k; the
    gradient LibMTL hands back to rep reaches θ unchanged."""
    c, g, h = (torch.as_tensor(draw[key], dtype=torch.float64) for key in ("losses", "grads", "head_grads"))
    model.rep_grad = True
    rep = 1.0 + model.theta[None, :]
    model.rep = rep.detach().requires_grad_()
    model.rep_tasks = {task: model.rep for task in model.task_name}
    losses = torch.stack([c[k] + (g[k] * model.rep[0]).sum() + h[k] @ head for k, head in enumerate(model.heads)])
    # LibMTL reads each task's gradient of rep from rep_tasks[task].grad after that task's backward
    per_task = []
    for k in range(model.task_num):
        model.rep.grad = None
        losses[k].backward(retain_graph=True)
        per_task.append(model.rep.grad.clone())
    model.rep.grad = None

    def computed(losses_, mode, rep_grad=False):
        return torch.stack(per_task)
    model._compute_grad = computed
    original, model.rep = model.rep, rep
    try:
        return model.backward(losses, **kwargs)
    finally:
        del model._compute_grad
        model.rep = original


def _values(grad, size):
    return [0.0] * size if grad is None else [float(x) for x in grad.detach().reshape(-1)]


# ---- the cases ---------------------------------------------------------------------------------

EXACT = {"rtol": 1e-9, "atol": 1e-12, "why": "the same float64 arithmetic"}


def standard_inputs(seed, steps=1):
    """K = 2 and 3, small and large gradient scales, near-collinear gradients."""
    return [
        ("k2", {"seed": seed, "num_tasks": 2, "steps": steps}),
        ("k3", {"seed": seed + 1, "num_tasks": 3, "steps": steps}),
        ("k3-small", {"seed": seed + 2, "num_tasks": 3, "steps": steps, "scale": 1e-4}),
        ("k3-large", {"seed": seed + 3, "num_tasks": 3, "steps": steps, "scale": 1e2}),
        ("k2-collinear", {"seed": seed + 4, "num_tasks": 2, "steps": steps, "kind": "collinear"}),
    ]


def _golden(method, file, cls_name, cases):
    return {"method": method,
            "reference": {"repository": REPOSITORY, "file": file, "function": cls_name},
            "cases": cases}


def _case(name, inputs, expected, switch="default", options=None, head_grads=None, tolerance=EXACT):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": head_grads, "lr": LR,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


def make(checkout):
    """One golden dict per method: LibMTL's EW, RLW, GLS, GradNorm, IMTL (ours: imtl_l with
    the hybrid), DB-MTL, MoCo, GradVac, GradDrop and PCGrad on the standard cases."""
    torch.set_default_dtype(torch.float64)
    weighting = _import(checkout)
    from scripts.make_goldens import commit_of
    commit = commit_of(checkout)
    goldens = []
    for method, cls_name, file, kwargs, steps, extra in SPECS:
        cls = getattr(weighting, cls_name)
        cases = []
        for name, inputs in standard_inputs(seed=100 * len(goldens) + 1, steps=steps):
            for switch, options, head_grads, seed in extra(inputs):
                expected = run(cls, inputs, kwargs, seed=seed, rep=cls_name == "GradDrop")
                label = name if switch == "default" else f"{name} {switch}"
                cases.append(_case(label, inputs, expected, switch, options, head_grads))
        golden = _golden(method, f"LibMTL/weighting/{file}", cls_name, cases)
        golden["reference"]["commit"] = commit
        goldens.append(golden)
    return goldens


def _default(inputs):
    return [("default", {}, None, 0)]


SPECS = [
    # (our method, LibMTL class, file, LibMTL kwargs (its config.py defaults), steps, switches)
    ("ew", "EW", "EW.py", {}, 1, _default),
]
