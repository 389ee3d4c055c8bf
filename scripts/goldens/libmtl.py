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
loss_scale) get LibMTL's default optimizer here (NETWORK: Adam, lr 1e-4, weight_decay 1e-5)
over the weighting's own parameters, zeroed before and stepped after every backward like the
trainer's (θ and φ are reset anyway).

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


def run(weighting_class, inputs, kwargs, seed=0, rep=False, own_optimizer=None):
    """LibMTL's `weighting_class` on golden_inputs(**inputs): a list of per-step dicts
    {shared, heads, weights} (ours.run_ours's format)."""
    draws = golden_inputs(**inputs)
    num_tasks, shared_size = draws[0]["grads"].shape
    head_size = draws[0]["head_grads"].shape[1]
    epochs = draws[-1]["epoch"] + 1
    model = stand_in(weighting_class, num_tasks, shared_size, head_size, epochs)
    model.init_param()
    own = model.own_params()
    optimizer = own_optimizer(own) if own else None
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


def _case(name, inputs, expected, switch="default", options=None, head_grads=None, tolerance=EXACT, lr=LR):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": head_grads, "lr": lr,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


def make(checkout):
    """One golden dict per method: LibMTL's EW, RLW, GLS, GradNorm, IMTL (ours: imtl_l), DB-MTL,
    MoCo, GradVac, GradDrop and PCGrad on the standard inputs, each default and switch."""
    torch.set_default_dtype(torch.float64)
    weighting = _import(checkout)
    from scripts.make_goldens import commit_of
    commit = commit_of(checkout)
    goldens = []
    for number, spec in enumerate(SPECS):
        cls = getattr(weighting, spec["class"])
        cases = []
        for name, inputs in standard_inputs(seed=100 * number + 1, steps=spec.get("steps", 1)):
            inputs = {**inputs, **spec.get("inputs", {})}
            for variant in spec.get("variants", [{}]):
                kwargs = {**spec.get("kwargs", {}), **variant.get("kwargs", {})}
                seed = variant.get("options", {}).get("seed", 0)
                case_lr = variant.get("lr", spec.get("lr", LR))
                lr = variant.get("own_lr", case_lr)
                expected = run(cls, inputs, kwargs, seed=seed, rep=spec["class"] == "GradDrop",
                               own_optimizer=lambda params, lr=lr: torch.optim.Adam(
                                   params, lr=lr, weight_decay=NETWORK["weight_decay"]))
                for step in expected:
                    for key in variant.get("unchecked", spec.get("unchecked", ())):
                        step[key] = None
                switch = variant.get("switch") or _flags(spec["method"], variant.get("options")) or "default"
                label = name if not variant else f"{name} {variant.get('label', switch)}"
                cases.append(_case(label, inputs, expected, switch, variant.get("options"),
                                   variant.get("head_grads"), variant.get("tolerance", spec.get("tolerance", EXACT)),
                                   lr=case_lr))
        golden = _golden(spec["method"], f"LibMTL/weighting/{spec['class']}.py", spec["class"], cases)
        golden["reference"]["commit"] = commit
        if "note" in spec:
            golden["reference"]["note"] = spec["note"]
        goldens.append(golden)
    return goldens


def _flags(method, options):
    """Our command line for `options`, e.g. --gradnorm-lr 0.05 --imtl-l-hybrid true."""
    prefix = "--" + method.replace("_", "-") + "-"
    return " ".join(f"{prefix}{key.replace('_', '-')} {str(value).lower() if isinstance(value, bool) else value}"
                    for key, value in (options or {}).items())


# LibMTL's default optimizer (LibMTL/config.py: --optim adam --lr 1e-4 --weight_decay 1e-5, no
# scheduler), which trains a weighting's own parameters (GradNorm's and IMTL's loss_scale); the
# runner gives it the case's lr, the network's lr on our side.
NETWORK = {"lr": 1e-4, "weight_decay": 1e-5}

SPECS = [
    {"method": "ew", "class": "EW"},
    {"method": "rlw", "class": "RLW", "steps": 3,
     "variants": [{}, {"label": "seed 3", "options": {"seed": 3}}]},
    {"method": "gls", "class": "GLS", "unchecked": ("weights",),
     "note": "LibMTL's GLS returns L_k / (K Π L) as its weights, not the weights S / (K L_k) of the gradient it "
             "backpropagates, so the weights are not compared; the shared update and heads are."},
    {"method": "gradnorm", "class": "GradNorm", "steps": 6, "inputs": {"steps_per_epoch": 2},
     "kwargs": {"alpha": 1.5}, "lr": NETWORK["lr"],
     "variants": [{}, {"label": "network lr 0.05", "lr": 0.05},
                  {"options": {"trainer": "own", "lr": 0.05}, "own_lr": 0.05}],
     "note": "loss_scale trained by LibMTL's default network optimizer, Adam(weight_decay 1e-5) at the case's "
             "lr (ours: the network's lr, the case's lr, or --gradnorm-lr with --gradnorm-trainer own), stepped "
             "after every backward; 2 steps per epoch."},
    {"method": "imtl_l", "class": "IMTL", "steps": 5, "lr": NETWORK["lr"],
     "variants": [{"label": "(heads: s as LibMTL's IMTL)", "unchecked": ("shared", "weights")},
                  {"options": {"hybrid": True}, "unchecked": ("weights",)},
                  {"label": "--imtl-l-hybrid true, network lr 0.05", "options": {"hybrid": True}, "lr": 0.05,
                   "unchecked": ("weights",)},
                  {"options": {"hybrid": True, "trainer": "own", "lr": 0.05}, "own_lr": 0.05,
                   "unchecked": ("weights",)}],
     "note": "LibMTL's IMTL is the IMTL-L+G hybrid (--imtl-l-hybrid true). IMTL-L alone has no published code: "
             "its default is compared on what it shares with LibMTL's IMTL, the scales s (trained by LibMTL's "
             "default Adam, lr 1e-4, weight_decay 1e-5), through the heads' gradients e^{s_k} h_k. LibMTL returns "
             "IMTL-G's α of the scaled gradients, ours the effective weights α·e^s: the weights are not compared "
             "(the shared update Σ α_k e^{s_k} g_k is)."},
    {"method": "db_mtl", "class": "DB_MTL", "steps": 5, "kwargs": {"DB_beta": 0.9, "DB_beta_sigma": 0.0},
     "unchecked": ("weights",),
     "variants": [{}, {"label": "beta_sigma 0.5", "options": {"beta_sigma": 0.5}, "kwargs": {"DB_beta_sigma": 0.5}}],
     "note": "LibMTL returns weights of 1 (no weights), so they are not compared."},
    {"method": "moco", "class": "MoCo", "steps": 5, "unchecked": ("weights",),
     "kwargs": {"MoCo_beta": 0.5, "MoCo_beta_sigma": 0.5, "MoCo_gamma": 0.1, "MoCo_gamma_sigma": 0.5, "MoCo_rho": 0},
     "note": "ours reports no weights (its update is λ-weighted tracked gradients, no mixing of this step's); "
             "λ enters the shared update, which is compared."},
    {"method": "gradvac", "class": "GradVac", "steps": 5, "kwargs": {"GradVac_beta": 0.5, "GradVac_group_type": 0},
     "variants": [{}, {"label": "seed 3", "options": {"seed": 3}}], "unchecked": ("weights",),
     "note": "LibMTL's GradVac returns weights of 1, not the weights of its update, so they are not compared."},
    {"method": "graddrop", "class": "GradDrop", "steps": 3, "kwargs": {"leak": 0.0}, "unchecked": ("weights",),
     "variants": [{}, {"label": "leak 0.5", "options": {"leak": 0.5}, "kwargs": {"leak": 0.5}}],
     "note": "LibMTL drops at the representation (rep_grad): here rep = 1 + θ for one sample, so sign(rep) = 1 "
             "and the representation's gradients are the shared parameters' gradients."},
    {"method": "pcgrad", "class": "PCGrad", "steps": 3,
     "variants": [{}, {"label": "seed 3", "options": {"seed": 3}}],
     "note": "PCGrad's authors' code (tianheyu927/PCGrad) is TensorFlow 1 and needs a TF graph; LibMTL's PyTorch "
             "PCGrad is the reference."},
]
