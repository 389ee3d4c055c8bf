"""What the runners share: a published checkout imported under a package name that other
repositories use too, the linear toy losses whose gradients are exactly golden_inputs' draws,
and tensors as JSON lists."""
import importlib
import sys
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def packages_set_aside(*packages):
    """Modules of these package names imported inside the block are forgotten after it, and
    those from before come back: the Nash-MTL, FAMO, SDMGrad and FairGrad repositories all have
    a package `methods`, LibMTL's forks (STCH, ExcessMTL) a package `LibMTL`."""
    def ours(name):
        return any(name == p or name.startswith(p + ".") for p in packages)
    saved = {n: m for n, m in sys.modules.items() if ours(n)}
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


@contextmanager
def checkout_on_path(checkout, *packages):
    """The checkout first on sys.path and its `packages` imported afresh (packages_set_aside)."""
    with packages_set_aside(*packages):
        sys.path.insert(0, str(checkout))
        try:
            yield
        finally:
            sys.path.remove(str(checkout))


def import_from(checkout, module, *packages):
    with checkout_on_path(checkout, *(packages or (module.split(".")[0],))):
        return importlib.import_module(module)


def toy(draw):
    """θ (P,), the K heads φ_k (H,) at 0 with requires_grad, and the K losses c_k + g_k·θ + h_k·φ_k."""
    num_tasks, shared_size = draw["grads"].shape
    theta = torch.zeros(shared_size, dtype=torch.float64, requires_grad=True)
    heads = [torch.zeros(draw["head_grads"].shape[1], dtype=torch.float64, requires_grad=True)
             for _ in range(num_tasks)]
    c, g, h = (torch.as_tensor(draw[key], dtype=torch.float64) for key in ("losses", "grads", "head_grads"))
    losses = torch.stack([c[k] + g[k] @ theta + h[k] @ heads[k] for k in range(num_tasks)])
    return theta, heads, losses


def floats(values):
    return [float(x) for x in (values.detach().reshape(-1) if torch.is_tensor(values) else np.ravel(values))]


def grad_or_zeros(param):
    return floats(torch.zeros_like(param) if param.grad is None else param.grad)
