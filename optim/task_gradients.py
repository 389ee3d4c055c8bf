"""Per-task gradients of the shared parameters in exactly K backward passes."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge


def _task_roots(losses):
    """Where each task's backward starts. Indexing a stacked loss tensor would start at
    the stack, whose backward hands zeros to every other task's branch, so autograd
    would walk all K branches K times; for `torch.stack([...])` start below the stack,
    at each task's own loss node, instead. None marks a loss that needs no gradient."""
    if isinstance(losses, torch.Tensor) and losses.grad_fn is not None and losses.grad_fn.name() == "StackBackward0":
        one = torch.ones((), dtype=losses.dtype, device=losses.device)
        return [None if fn is None else (GradientEdge(fn, nr), one) for fn, nr in losses.grad_fn.next_functions]
    return [(loss, None) if loss.requires_grad else None for loss in losses]


def task_gradients(losses: Sequence[Tensor] | Tensor, shared_params: Iterable[Tensor],
                   task_params: Sequence[Iterable[Tensor]] | None = None,
                   keep_graph: bool = False) -> list[list[Tensor | None]]:
    """Backpropagate each task's loss on its own.

    losses: K scalar losses (a sequence, or a 1-D tensor such as torch.stack([...])).
    shared_params: the parameters every task reaches.
    task_params: optional K parameter lists, task k's own parameters.

    Returns K lists aligned with `shared_params`: task k's gradient of each shared
    parameter, or None where task k's loss does not reach it. Task k's own parameters
    get their gradient accumulated into `.grad` from the same pass, so no extra
    backward is needed for them. Each pass asks autograd only for the shared
    parameters and task k's own, so it walks task k's branch and the shared trunk only.
    keep_graph: keep the graph after the last pass, for a backward that follows.
    """
    shared_params = list(shared_params)
    roots = _task_roots(losses)
    num_tasks = len(roots)
    if task_params is not None and len(task_params) != num_tasks:
        raise ValueError(f"got {num_tasks} losses but {len(task_params)} task parameter lists")
    trainable = [i for i, p in enumerate(shared_params) if p.requires_grad]
    last = max((k for k, r in enumerate(roots) if r is not None), default=-1)
    grads_per_task = []
    for k, root in enumerate(roots):
        shared_grads = [None] * len(shared_params)
        grads_per_task.append(shared_grads)
        if root is None:
            continue
        own = [p for p in (task_params[k] if task_params is not None else ()) if p.requires_grad]
        inputs = [shared_params[i] for i in trainable] + own
        output, grad_output = root
        grads = torch.autograd.grad(
            [output], inputs, grad_outputs=None if grad_output is None else [grad_output],
            retain_graph=keep_graph or k < last, allow_unused=True,
        )
        for i, g in zip(trainable, grads):
            shared_grads[i] = g
        for p, g in zip(own, grads[len(trainable):]):
            if g is None:
                continue
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)
    return grads_per_task
