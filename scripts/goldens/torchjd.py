"""Goldens from torchjd (github.com/TorchJD/torchjd; the installed package's version is recorded,
and the checkout's commit): its aggregators run through its own multi-task backward,
autojac.mtl_backward then autojac.jac_to_grad, on the linear toy
L_k = c_k + g_k·f + h_k·φ_k with the feature f = θ + 0 (θ = φ = 0). Recorded: θ.grad (the
aggregated shared update), each head's .grad (torchjd gives each its own ∇L_k) and the
weights jac_to_grad returns (none for GradDrop, which is no weighting).

Two kinds of golden:
- upgrad, dualproj and imtl, whose reference is torchjd. IMTL-G has no authors' code and
  LibMTL's IMTL is the L+G hybrid (ours: imtl_l), so torchjd's IMTLG is imtl's reference.
  UPGrad and DualProj are torchjd's authors' own methods.
- "extends" cases (SWITCHES): the switch of another method's golden that claims torchjd's
  behaviour (docs/methods.md, "Published implementations"), added to that method's golden made
  by its own runner. PCGrad, GradVac and GradDrop draw from the global torch RNG: it is seeded
  with torch.manual_seed(seed) before the first step, ours draws from a torch.Generator seeded
  with the same seed, which gives the same numbers. torchjd has no SDMGrad aggregator: its
  SDMGradWeighting runs as its documentation's example does, on one batch (A = J Jᵀ), the
  losses backpropagated with the weights (losses.backward(weights): head k gets w_k h_k).

The installed package runs (pip install torchjd==<requirements.txt's version> quadprog qpsolvers
cvxpy clarabel), not the checkout, which may hold another version (the mirror's HEAD 46962c2 is
0.8.1, without torchjd.linalg): the reference's "commit" names the package and version,
"checkout" the checkout's commit.
"""
import torch

from .inputs import golden_inputs
from .libmtl import standard_inputs
from .published import floats, grad_or_zeros, toy

REPOSITORY = "https://github.com/TorchJD/torchjd"
EXACT = {"rtol": 1e-9, "atol": 1e-12, "why": "the same torchjd computation on the Gram matrix; ours forms M "
         "from the gradients in its own order (rounding)"}
STEPS = 2
SWITCH_STEPS = 3  # stateful aggregators (GradVac's φ̂, SDMGrad's w, the RNG) over consecutive steps


def run(aggregator, inputs, seed=None):
    """torchjd's `aggregator` through mtl_backward and jac_to_grad on golden_inputs(**inputs),
    one instance for all steps (a stateful one keeps its state); `seed`: torch.manual_seed before
    the first step. A list of per-step dicts {shared, heads, weights} (ours.run_ours's format)."""
    from torchjd.autojac import jac_to_grad, mtl_backward
    if seed is not None:
        torch.manual_seed(seed)
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
        out.append({"shared": floats(theta.grad), "heads": [floats(hd.grad) for hd in heads],
                    "weights": None if weights is None else floats(weights)})
    return out


def run_sdmgrad(weighting, inputs):
    """torchjd's SDMGradWeighting as in its documentation's example with the three batches one:
    A = J Jᵀ of the step's (K, P) Jacobian, then losses.backward(weights) (θ gets Σ w_k g_k,
    head k gets w_k h_k). One instance for all steps (its w is warm-started)."""
    out = []
    for draw in golden_inputs(**inputs):
        theta, heads, losses = toy(draw)
        jacobian = torch.as_tensor(draw["grads"], dtype=torch.float64)
        weights = weighting(jacobian @ jacobian.T)
        losses.backward(weights)
        out.append({"shared": floats(theta.grad), "heads": [grad_or_zeros(hd) for hd in heads],
                    "weights": floats(weights)})
    return out


def _case(name, inputs, expected, switch="default", options=None, head_grads=None, tolerance=EXACT):
    return {"name": name, "switch": switch, "options": options or {}, "head_grads": head_grads,
            "inputs": inputs, "tolerance": tolerance, "expected": expected}


FLOAT64_EPS = torch.finfo(torch.float64).eps  # torchjd's AlignedMTL cut-off on a float64 M
# our defaults (--sdmgrad-lr, -momentum, -n-iter, -lamda), equal to torchjd's, passed explicitly
SDMGRAD_KWARGS = {"lr": 10.0, "momentum": 0.5, "n_iter": 20, "lambda_": 0.3}
CAGRAD_C = 0.4  # our default c (the authors' run.sh); torchjd's CAGrad has no default
CAGRAD_TOLERANCE = {"rtol": 1e-8, "atol": 1e-12,
                    "why": "the same Clarabel solve (torchjd's CAGradWeighting) on M / tr(M); ours divides M by its "
                           "mean diagonal first, so the program's data differ by rounding, which the interior-point "
                           "iterates carry on: measured 3.4e-11 normwise relative"}


def switches():
    """(method, torchjd's class name and file, our switch, our options, head_grads, how to run
    torchjd on inputs, which standard inputs, tolerance, note) of every torchjd switch."""
    from torchjd.aggregation import MGDA, AlignedMTL, CAGrad, GradDrop, GradVac, PCGrad, SDMGradWeighting
    every = ("k2", "k3", "k3-small", "k3-large", "k2-collinear")
    return [
        {"method": "mgda", "cls": "MGDA", "file": "_mgda.py",
         "switch": "--mgda-solver frank_wolfe --mgda-normalization none --head-grads own",
         "options": {"solver": "frank_wolfe", "normalization": "none"}, "head_grads": "own",
         "run": lambda inputs: run(MGDA(), inputs), "inputs": every},
        {"method": "cagrad", "cls": f"CAGrad(c={CAGRAD_C})", "file": "_cagrad.py",
         "switch": "--cagrad-convention ours", "options": {"convention": "ours"},
         "run": lambda inputs: run(CAGrad(c=CAGRAD_C), inputs), "tolerance": CAGRAD_TOLERANCE,
         # torchjd's guard is absolute: at gradients 1e-4 (Σ‖g_k‖² < 1e-4) it returns zero weights,
         # ours is relative (docs/methods.md, "CAGrad"): k3-small is left out
         "inputs": ("k2", "k3", "k3-large", "k2-collinear")},
        {"method": "aligned_mtl", "cls": "AlignedMTL", "file": "_aligned_mtl.py",
         "switch": f"--aligned-mtl-convention ours --aligned-mtl-rank-eps {FLOAT64_EPS!r}",
         "options": {"convention": "ours", "rank_eps": FLOAT64_EPS},
         "run": lambda inputs: run(AlignedMTL(), inputs), "inputs": every},
        {"method": "pcgrad", "cls": "PCGrad", "file": "_pcgrad.py",
         "switch": "--pcgrad-shuffle torch --pcgrad-eps 0", "options": {"shuffle": "torch", "eps": 0.0},
         "run": lambda inputs: run(PCGrad(), inputs, seed=0), "inputs": every},
        {"method": "gradvac", "cls": "GradVac", "file": "_gradvac.py",
         "switch": "--gradvac-shuffle torch", "options": {"shuffle": "torch"},
         "run": lambda inputs: run(GradVac(), inputs, seed=0), "inputs": every},
        {"method": "graddrop", "cls": "GradDrop", "file": "_graddrop.py",
         "switch": "--graddrop-purity-eps 0", "options": {"purity_eps": 0.0},
         "run": lambda inputs: run(GradDrop(), inputs, seed=0), "inputs": every},
        {"method": "sdmgrad", "cls": "SDMGradWeighting", "file": "_sdmgrad.py",
         "switch": "--sdmgrad-convention torchjd --sdmgrad-max-norm 0 --sdmgrad-batches 1 --head-grads weighted",
         "options": {"convention": "torchjd", "max_norm": 0.0, "batches": 1}, "head_grads": "weighted",
         "run": lambda inputs: run_sdmgrad(SDMGradWeighting(**SDMGRAD_KWARGS), inputs), "inputs": every,
         "function": "SDMGradWeighting(lr 10, momentum 0.5, n_iter 20, lambda_ 0.3) on A = J Jᵀ of one batch, "
                     "losses.backward(weights) as its documentation's example"},
    ]


def switch_goldens(installed, checkout_commit):
    """One "extends" golden per torchjd switch (see the module)."""
    goldens = []
    for index, spec in enumerate(switches()):
        cases = [_case(f"{name} torchjd", inputs, spec["run"](inputs), spec["switch"], spec["options"],
                       spec.get("head_grads"), spec.get("tolerance", EXACT))
                 for name, inputs in standard_inputs(seed=2901 + 100 * index, steps=SWITCH_STEPS)
                 if name in spec["inputs"]]
        function = spec.get("function", f"{spec['cls']} through autojac.mtl_backward and jac_to_grad")
        where = f"torchjd {installed} (PyPI; checkout {checkout_commit[:7]}) src/torchjd/aggregation/{spec['file']}"
        goldens.append({"method": spec["method"], "extends": True,
                        "reference": {"switches": {spec["switch"]: f"{where} {function}"}},
                        "cases": cases})
    return goldens


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
    return goldens + switch_goldens(installed, commit_of(checkout))
