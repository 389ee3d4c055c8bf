"""Task dominance of the shared parameters: AU / rAU (docs/methods.md, "AU and rAU").

For every shared parameter element and task k, Δ_k is the part of an optimizer step
caused by task k. AU_k ← β AU_k + (1−β) Δ_k² remembers how much task k has recently moved
the element, and rAU_k = AU_k / Σ_j AU_j how much of the element's movement is task k's:
balanced means rAU_k ≈ 1/K, dominated means one task's rAU near 1.

Δ_k per optimizer, after its step:
- An optimizer with `task_updates(params, task_grads)` (every AdaTask base, and any
  subclass or new base of AdaTaskOptimizer) says itself: task k's own step, which the
  base's functional core recomputes from task k's state (optim/adatask.py).
- A plain torch.optim optimizer (Adam, RMSprop, Adagrad, SGD) applies the summed gradient
  with one state. It is tracked through the AdaTask base that reproduces it with one task
  (PLAIN_BASES): Δ_k is that base's update for task k's gradient, from the optimizer's own
  state, except that a state linear in the gradients is replaced by task k's share of it,
  which this tracker keeps (plain Adam: m_k, the EMA of g_k; m is linear, so Σ_k m_k is
  Adam's exp_avg). So for Adam Δ_k = −η (m_k/(1−β1^t)) / (sqrt(v̂)+ε) with Adam's shared v̂,
  for RMSprop and Adagrad −η g_k / (sqrt(v)+ε) with the shared accumulator v, for SGD −η g_k.
Under a plain optimizer the Δ_k sum to the actual step; under AdaTask they sum to it less
the decoupled weight decay, which no task causes.

Wiring: build the tracker beside the optimizer (and checkpoint them together: plain Adam's
m_k must start with Adam's exp_avg), then after every `optimizer.step(...)` call
`tracker.update(task_grads)` with the per-task contributions that step consumed (after
any clipping), K lists aligned with the shared parameters.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, Any

import torch
from torch import Tensor

from . import BASES
from .adatask import TaskGrads

QUANTILES = (0.1, 0.5, 0.9)
CSV_FIELDS = ("epoch", "layer_index", "layer", "task", "mean_rau", "dominated", "q10", "q50", "q90")


# A plain torch.optim optimizer (a class that cannot be given `task_updates`) → the base whose
# functional core it is with one task (tests/test_adatask.py), under the same state names and
# param-group settings: every base of the registry names its plain form.
PLAIN_BASES = {base.plain: base for base in BASES}
# Plain-optimizer options that change the update in ways Δ_k cannot split by task:
# option → its only supported value.
PLAIN_OPTIONS = {"weight_decay": 0, "maximize": False, "amsgrad": False, "momentum": 0, "centered": False,
                 "lr_decay": 0}


def relative(au: Tensor) -> Tensor:
    """rAU along the task axis (dim 0); 1/K where no task has moved the element."""
    total = au.sum(0, keepdim=True)
    return torch.where(total > 0, au / total, 1.0 / au.shape[0])


def _zeros_for_none(grads, params):
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


class PlainTaskUpdates:
    """`task_updates` for a plain torch.optim optimizer in PLAIN_BASES: its base's
    `apply_update` on task k's gradient, with the optimizer's state shared by all tasks
    except the base's `linear_state_names`, for which task k's share is used. The shares
    (K, *param.shape) start at zero, as the optimizer's state does; `advance` folds each
    step's task gradients into them through the base's `update_state` (whose other states
    it runs on scratch zeros, as a linear state depends on the gradients and itself only)."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor], num_tasks: int) -> None:
        self.optimizer = optimizer
        self.base = PLAIN_BASES[type(optimizer)]
        self.num_tasks = num_tasks
        self.params = list(params)
        self.shares = {name: [torch.zeros((num_tasks, *p.shape), dtype=p.dtype, device=p.device)
                              for p in self.params] for name in self.base.linear_state_names}
        self._index = {p: i for i, p in enumerate(self.params)}

    def share_list(self) -> list[Tensor]:
        return [t for tensors in self.shares.values() for t in tensors]

    def _by_group(self, params):
        """(param group, indices into params, those params, their step counts) per group."""
        index = {p: i for i, p in enumerate(params)}
        for group in self.optimizer.param_groups:
            indices = [index[p] for p in group["params"] if p in index]
            if indices:
                group_params = [params[i] for i in indices]
                steps = [float(self.optimizer.state[p].get("step", 0)) for p in group_params]
                yield group, indices, group_params, steps

    def _shares(self, params, k):
        return {name: [shares[self._index[p]][k] for p in params] for name, shares in self.shares.items()}

    def advance(self, params: Sequence[Tensor], task_grads: TaskGrads) -> None:
        """Fold the step's task gradients (K lists aligned with params) into the shares."""
        if not self.shares:
            return
        for group, indices, group_params, steps in self._by_group(params):
            scratch = {name: [torch.zeros_like(p) for p in group_params]
                       for name in self.base.state_names if name not in self.shares}
            for k in range(self.num_tasks):
                grads = _zeros_for_none([task_grads[k][i] for i in indices], group_params)
                self.base.update_state(group, grads, {**scratch, **self._shares(group_params, k)}, steps)

    def task_updates(self, params: Sequence[Tensor], task_grads: TaskGrads) -> list[list[Tensor]]:
        """Δ_k as K lists aligned with params, as AdaTaskOptimizer.task_updates."""
        out = [[None] * len(params) for _ in range(self.num_tasks)]
        for group, indices, group_params, steps in self._by_group(params):
            shared = {name: [self.optimizer.state[p][name] for p in group_params]
                      for name in self.base.state_names if name not in self.shares}
            for k in range(self.num_tasks):
                grads = _zeros_for_none([task_grads[k][i] for i in indices], group_params)
                deltas = [torch.zeros_like(p) for p in group_params]
                self.base.apply_update(group, deltas, grads, {**shared, **self._shares(group_params, k)}, steps)
                for i, delta in zip(indices, deltas):
                    out[k][i] = delta
        return out


class DominanceTracker:
    """AU_k per shared parameter element (float32 tensors of shape (K, *param.shape)).

    optimizer: one with `task_updates` (any AdaTask optimizer), or torch.optim Adam /
        RMSprop / Adagrad / SGD.
    shared_layers: [(layer name, [params])] ordered input → output (model.shared_layers()).
    shared_params: the order of the shared parameters in `update`'s task_grads; by default
        the order they have in the optimizer's param groups (for an AdaTask optimizer that is
        `optimizer.shared_params()`, the order `step(task_grads=...)` wants; for a plain one
        built over model.parameters() it is model.shared_parameters()).
    dominated_threshold: an element counts as dominated by task k where rAU_k exceeds it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, shared_layers: Iterable[tuple[str, Iterable[Tensor]]],
                 num_tasks: int, beta: float = 0.999, *, shared_params: Iterable[Tensor] | None = None,
                 dominated_threshold: float = 0.9) -> None:
        if not callable(getattr(optimizer, "task_updates", None)) and type(optimizer) not in PLAIN_BASES:
            raise ValueError(f"AU tracking supports optimizers with task_updates (the AdaTask optimizers) and "
                             f"torch.optim Adam, RMSprop, Adagrad and SGD, not {type(optimizer).__name__}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.optimizer = optimizer
        self.num_tasks = num_tasks
        self.beta = beta
        self.dominated_threshold = dominated_threshold
        self.layers = [(name, list(params)) for name, params in shared_layers]
        self._group = {p: g for g in optimizer.param_groups for p in g["params"]}
        self.params = self._check_params(shared_params)
        self._plain = None
        if callable(getattr(optimizer, "task_updates", None)):
            self._check_task_updates()
            self._task_updates = optimizer.task_updates
        else:
            self._check_plain_options()
            self._plain = PlainTaskUpdates(optimizer, self.params, num_tasks)
            self._task_updates = self._plain.task_updates
        self.au = [torch.zeros((num_tasks, *p.shape), dtype=torch.float32, device=p.device) for p in self.params]
        self._index = {p: i for i, p in enumerate(self.params)}

    @property
    def first_moments(self) -> list[Tensor]:
        """Under a plain optimizer the per-task shares of its state that is linear in the
        gradients (plain Adam: m_k, which sum to its exp_avg), (K, *param.shape) per shared
        parameter; empty otherwise. Checkpointed with AU."""
        return self._plain.share_list() if self._plain is not None else []

    # ---- construction checks -------------------------------------------------------

    def _check_params(self, shared_params):
        in_layers = [p for _, params in self.layers for p in params]
        empty = [name for name, params in self.layers if not params]
        if empty:
            raise ValueError(f"shared layers without parameters: {', '.join(empty)}")
        missing = [p for p in in_layers if p not in self._group]
        if missing:
            raise ValueError(f"{len(missing)} shared-layer parameters are not in the optimizer")
        if shared_params is None:
            layer_set = set(in_layers)
            shared_params = [p for g in self.optimizer.param_groups for p in g["params"] if p in layer_set]
        shared_params = list(shared_params)
        if len(shared_params) != len(in_layers) or set(shared_params) != set(in_layers):
            raise ValueError("shared_params must be exactly the parameters of shared_layers (each once)")
        return shared_params

    def _check_task_updates(self):
        name = type(self.optimizer).__name__
        tasks = getattr(self.optimizer, "num_tasks", self.num_tasks)
        if tasks != self.num_tasks:
            raise ValueError(f"AU tracking of {self.num_tasks} tasks under {name} of {tasks} tasks")
        check = getattr(self.optimizer, "check_task_updates", None)
        if check is not None:
            try:
                check(self.params)
            except ValueError as error:
                raise ValueError(f"AU tracking under {name}: {error}") from error

    def _check_plain_options(self):
        groups = {id(self._group[p]): self._group[p] for p in self.params}.values()
        for group in groups:
            for option, supported in PLAIN_OPTIONS.items():
                if group.get(option, supported) != supported:
                    raise ValueError(f"AU tracking under torch.optim.{type(self.optimizer).__name__} needs "
                                     f"{option}={supported!r}, got {group[option]!r}")

    # ---- per step --------------------------------------------------------------------

    @torch.no_grad()
    def update(self, task_grads: TaskGrads) -> None:
        """Fold this step's Δ_k² into AU. Call right after optimizer.step() with the K lists of
        per-task gradients (contributions) of the shared parameters that step consumed; None
        counts as zero, a parameter no task reached was not stepped and is left alone."""
        stepped = self._stepped(task_grads)
        if not stepped:
            return
        params, grads = self._select(task_grads, stepped)
        if self._plain is not None:
            self._plain.advance(params, grads)
        au = [self.au[i] for i in stepped]
        for k, delta in enumerate(self._task_updates(params, grads)):
            torch._foreach_mul_(delta, delta)
            torch._foreach_lerp_([a[k] for a in au], [d.float() for d in delta], 1 - self.beta)

    @torch.no_grad()
    def task_steps(self, task_grads: TaskGrads) -> list[list[Tensor | None]]:
        """Δ as K lists aligned with the shared parameters (None where not stepped), from the
        state after the last `update(task_grads)`: what that step's update was made of."""
        stepped = self._stepped(task_grads)
        out = [[None] * len(self.params) for _ in range(self.num_tasks)]
        if not stepped:
            return out
        for k, delta in enumerate(self._task_updates(*self._select(task_grads, stepped))):
            for i, d in zip(stepped, delta):
                out[k][i] = d
        return out

    def _stepped(self, task_grads):
        if len(task_grads) != self.num_tasks or any(len(g) != len(self.params) for g in task_grads):
            raise ValueError(f"task_grads must be {self.num_tasks} lists of {len(self.params)} gradients "
                             "(one per shared parameter)")
        return [i for i in range(len(self.params)) if any(g[i] is not None for g in task_grads)]

    def _select(self, task_grads, stepped):
        """The stepped parameters and the K lists of their task gradients."""
        return [self.params[i] for i in stepped], [[g[i] for i in stepped] for g in task_grads]

    # ---- summaries -------------------------------------------------------------------

    @torch.no_grad()
    def layer_summary(self) -> list[dict[str, Any]]:
        """One row per (layer, task), layers input → output: mean rAU over the layer's
        elements, the fraction of its elements task k dominates, and rAU quantiles."""
        rows = []
        for index, (name, params) in enumerate(self.layers):
            au = torch.cat([self.au[self._index[p]].reshape(self.num_tasks, -1) for p in params], dim=1)
            rau = relative(au)
            quantiles = torch.quantile(rau, torch.tensor(QUANTILES, device=rau.device), dim=1)  # (Q, K)
            means = rau.mean(1)
            dominated = (rau > self.dominated_threshold).float().mean(1)
            for k in range(self.num_tasks):
                row = {"layer_index": index, "layer": name, "task": k, "mean_rau": float(means[k]),
                       "dominated": float(dominated[k])}
                row.update({f"q{round(q * 100)}": float(v) for q, v in zip(QUANTILES, quantiles[:, k])})
                rows.append(row)
        return rows

    # ---- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "beta": self.beta, "au": [a.clone() for a in self.au],
                "first_moments": [m.clone() for m in self.first_moments]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_tasks"] != self.num_tasks or state["beta"] != self.beta:
            raise ValueError(f"AU state of {state['num_tasks']} tasks with beta={state['beta']}, this tracker has "
                             f"{self.num_tasks} tasks and beta={self.beta}")
        for name in ("au", "first_moments"):
            mine, theirs = getattr(self, name), state[name]
            if [t.shape for t in mine] != [t.shape for t in theirs]:
                raise ValueError(f"AU state: {name} shapes do not match this tracker's shared parameters")
            for target, source in zip(mine, theirs):
                target.copy_(source)


def csv_rows(summary: Iterable[dict[str, Any]], epoch: int, task_names: Sequence[str]) -> list[dict[str, Any]]:
    """One epoch's `layer_summary()` rows as au.csv rows (floats to 6 significant digits)."""
    return [{**row, **{key: f"{value:.6g}" for key, value in row.items() if isinstance(value, float)},
             "epoch": epoch, "task": task_names[row["task"]]} for row in summary]


def write_csv(file: IO[str], rows: Iterable[dict[str, Any]]) -> None:
    """au.csv: the header, then `csv_rows` of every epoch so far. The run writes the whole
    file each epoch (through a temporary file), so a kill never leaves it torn."""
    writer = csv.DictWriter(file, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
