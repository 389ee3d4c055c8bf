"""AdaTask: task-wise adaptive learning rates (docs/methods.md, "AdaTask").

Every shared parameter keeps one set of adaptive moments per task, stacked along a
leading task axis (state tensors of shape (K, *param.shape)); each task takes its own
adaptive step from its own gradient and the parameter moves by the sum of the K steps.
Task-specific parameters get the plain base optimizer on their `.grad`, stored the same
way with a task axis of length 1, so one code path serves both.

The base optimizers follow torch.optim exactly (ε placement, bias correction, defaults),
so one task reproduces torch.optim.Adam / RMSprop / Adagrad.

Each base is a class around a functional core, as torch.optim separates an optimizer
class from its functional update: two static methods over one slot (a task of a shared
parameter, or the one slot of a task-specific parameter), its state passed in explicitly:
- `update_state(group, grads, states, steps, foreach=...)` folds the slot's gradients
  into its state, in place;
- `apply_update(group, params, grads, states, steps, foreach=...)` adds to `params` the
  step that the state (as `update_state` left it) and the gradients call for.
`step()` runs both for every slot. `task_updates()` runs `apply_update` on zeros after
the step, which recovers each task's part of that step exactly: optim.dominance tracks
AU through it, so a new base (or a subclass) is tracked without any change there.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .task_gradients import task_gradients

WEIGHT_DECAY_MODES = ("decoupled", "l2")

# Parameters, or param-group dicts, as torch.optim takes them.
Params = Iterable[Tensor] | Iterable[dict[str, Any]]
# K lists aligned with some parameters: task k's gradient (contribution) of each, None for none.
TaskGrads = Sequence[Sequence[Tensor | None]]
# One slot's state: state name -> one tensor per parameter.
SlotStates = dict[str, list[Tensor]]


def _as_groups(params: Params, task: int | None) -> list[dict[str, Any]]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return [dict(group, task=task) for group in params]
    return [{"params": params, "task": task}] if params else []


class AdaTaskOptimizer(torch.optim.Optimizer):
    """Shared machinery of the AdaTask family; subclasses name their state and math.

    shared_params: parameters (or param-group dicts) every task reaches.
    task_params: K lists (or lists of group dicts) of each task's own parameters;
        their length is the number of tasks K. Pass `num_tasks` instead when the
        model has no task-specific parameters.
    weight_decay_mode: "decoupled" (θ ← θ − η·wd·θ once per step, as AdamW) or
        "l2" (wd·θ/K added to each task's gradient, wd·θ in total).
    foreach: multi-tensor update (fast path) or the plain per-tensor reference path.

    A base (subclass) defines:
    plain: the torch.optim optimizer it equals with one task; the registry (optim.BASES)
        offers it as --method <plain's name in lower case> and <that>_with_adatask.
    state_names: its per-slot state tensors, each zeros of the parameter's shape at first.
    linear_state_names: those of them that are linear in the gradients (Adam's exp_avg): a
        plain optimizer over the summed gradient holds the sum of K per-task shares of them.
    update_reads_grads: whether `apply_update` reads the gradients, not only the state.
    update_state, apply_update: its functional core (the module docstring).
    """

    plain: type[torch.optim.Optimizer]  # the torch.optim optimizer it equals with one task
    state_names: tuple[str, ...] = ()
    linear_state_names: tuple[str, ...] = ()
    update_reads_grads: bool = True

    def __init__(self, shared_params: Params, task_params: Sequence[Params] | None = None, *,
                 num_tasks: int | None = None, defaults: dict[str, Any], foreach: bool = True) -> None:
        task_params = list(task_params) if task_params is not None else []
        if num_tasks is None:
            num_tasks = len(task_params)
        if task_params and len(task_params) != num_tasks:
            raise ValueError(f"num_tasks={num_tasks} but {len(task_params)} task parameter lists were given")
        if num_tasks < 1:
            raise ValueError("AdaTask needs at least one task: pass task_params=[...] or num_tasks")
        if defaults.get("weight_decay_mode") not in WEIGHT_DECAY_MODES:
            raise ValueError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {defaults.get('weight_decay_mode')!r}")
        if defaults.get("weight_decay", 0.0) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {defaults['weight_decay']}")
        groups = _as_groups(shared_params, None)
        for k, params in enumerate(task_params):
            groups += _as_groups(params, k)
        super().__init__(groups, defaults)
        self.num_tasks = num_tasks
        self.foreach = foreach
        self._task_grads = None

    # ---- the functional core, which each base defines -----------------------------------

    @staticmethod
    def update_state(group: dict[str, Any], grads: list[Tensor], states: SlotStates, steps: list[float], *,
                     foreach: bool = True) -> None:
        """Fold one slot's gradients (one per parameter) into its state, in place. steps: each
        parameter's step count, this step included; group: their param group's settings."""
        raise NotImplementedError

    @staticmethod
    def apply_update(group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: SlotStates,
                     steps: list[float], *, foreach: bool = True) -> None:
        """Add one slot's update to `params`, in place, from its state as `update_state` left
        it and, where the base reads them (`update_reads_grads`), the same gradients."""
        raise NotImplementedError

    # ---- parameters and gradients ------------------------------------------------------

    def shared_params(self) -> list[Tensor]:
        return [p for g in self.param_groups if g["task"] is None for p in g["params"]]

    def task_params(self, k: int) -> list[Tensor]:
        return [p for g in self.param_groups if g["task"] == k for p in g["params"]]

    def backward(self, losses: Sequence[Tensor] | Tensor) -> None:
        """K backward passes: keeps the per-task gradients of the shared parameters for
        `step()` and accumulates each task's own parameter gradients into `.grad`."""
        if len(losses) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} task losses, got {len(losses)}")
        self._task_grads = task_gradients(
            losses, self.shared_params(), [self.task_params(k) for k in range(self.num_tasks)]
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        self._task_grads = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, task_grads: TaskGrads | None = None) -> Any:
        """One update. `task_grads`: K lists aligned with `shared_params()` (a tensor or
        None per parameter), e.g. weighted or projected per-task gradients; by default
        the ones the last `backward(losses)` computed."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if task_grads is None:
            task_grads = self._task_grads
        self._task_grads = None
        shared_grads = self._per_parameter(task_grads) if task_grads is not None else {}
        for group in self.param_groups:
            if group["task"] is None:
                params = [p for p in group["params"] if p in shared_grads]
                grads = [shared_grads[p] for p in params]
            else:
                params = [p for p in group["params"] if p.grad is not None]
                grads = [[p.grad] for p in params]
            if params:
                self._update_group(group, params, grads)
        return loss

    def _per_parameter(self, task_grads):
        """{shared param: its K task gradients}; a task that does not reach a parameter
        contributes zeros, a parameter no task reaches is left alone."""
        shared = self.shared_params()
        if len(task_grads) != self.num_tasks or any(len(g) != len(shared) for g in task_grads):
            raise ValueError(
                f"task_grads must be {self.num_tasks} lists of {len(shared)} gradients (one per shared parameter)"
            )
        per_param = {}
        for i, p in enumerate(shared):
            grads = [task_grads[k][i] for k in range(self.num_tasks)]
            if all(g is None for g in grads):
                continue
            per_param[p] = [torch.zeros_like(p) if g is None else g for g in grads]
        return per_param

    def _update_group(self, group, params, grads):
        """grads[i][k]: slot k's gradient of params[i]; slots are tasks (shared) or one."""
        slots = len(grads[0])
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                for name in self.state_names:
                    state[name] = self._initial_state(name, p, slots)
            state["step"] += 1
        lr, wd = float(group["lr"]), group["weight_decay"]
        if wd and group["weight_decay_mode"] == "decoupled":
            torch._foreach_mul_(params, 1.0 - lr * wd)
        steps = [float(self.state[p]["step"]) for p in params]
        for k in range(slots):
            grads_k = [g[k] for g in grads]
            if wd and group["weight_decay_mode"] == "l2":
                grads_k = torch._foreach_add(grads_k, params, alpha=wd / slots)
            states_k = self._slot_states(params, k)
            self.update_state(group, grads_k, states_k, steps, foreach=self.foreach)
            self.apply_update(group, params, grads_k, states_k, steps, foreach=self.foreach)

    def _initial_state(self, name, p, slots):
        return torch.zeros((slots, *p.shape), dtype=p.dtype, device=p.device)

    def _slot_states(self, params, k):
        return {name: [self.state[p][name][k] for p in params] for name in self.state_names}

    # ---- each task's part of a step (optim.dominance) -------------------------------------

    def check_task_updates(self, params: Iterable[Tensor]) -> None:
        """ValueError unless `task_updates` can split the steps of `params`: they must be
        shared parameters of this optimizer, and l2 decay is refused for a base whose
        update reads the gradients (the decay term added to them used θ before the step)."""
        group_of = {p: g for g in self.param_groups for p in g["params"]}
        for p in params:
            group = group_of.get(p)
            if group is None:
                raise ValueError("a parameter is not in the optimizer")
            if group["task"] is not None:
                raise ValueError(f"a parameter is in task {group['task']}'s group, not a shared one")
            if group["weight_decay"] and group["weight_decay_mode"] == "l2" and self.update_reads_grads:
                raise ValueError(f"{type(self).__name__} supports decoupled weight decay only, not l2")

    @torch.no_grad()
    def task_updates(self, params: Sequence[Tensor], task_grads: TaskGrads) -> list[list[Tensor]]:
        """Each task's part of the last step of some shared parameters: K lists aligned with
        `params`, Δ_k = what `apply_update` added for task k. Call it after `step()`, before
        the next one: the base's `apply_update` runs again on zeros, from the state that step
        left, so Δ_k is exactly what it added. task_grads: the gradients that step consumed,
        K lists aligned with `params` (None counts as zero). The decoupled weight decay
        belongs to no task and is in no Δ_k."""
        params = list(params)
        if len(task_grads) != self.num_tasks or any(len(g) != len(params) for g in task_grads):
            raise ValueError(f"task_grads must be {self.num_tasks} lists of {len(params)} gradients")
        index = {p: i for i, p in enumerate(params)}
        out = [[None] * len(params) for _ in range(self.num_tasks)]
        for group in self.param_groups:
            indices = [index[p] for p in group["params"] if p in index]
            if not indices:
                continue
            group_params = [params[i] for i in indices]
            steps = [float(self.state[p]["step"]) for p in group_params]
            for k in range(self.num_tasks):
                grads = [torch.zeros_like(params[i]) if task_grads[k][i] is None else task_grads[k][i]
                         for i in indices]
                deltas = [torch.zeros_like(p) for p in group_params]
                self.apply_update(group, deltas, grads, self._slot_states(group_params, k), steps,
                                  foreach=self.foreach)
                for i, delta in zip(indices, deltas):
                    out[k][i] = delta
        return out


class AdamWithAdaTask(AdaTaskOptimizer):
    """Adam with per-task moments for the shared parameters (docs/methods.md, "AdaTask")."""

    plain = torch.optim.Adam

    state_names = ("exp_avg", "exp_avg_sq")
    linear_state_names = ("exp_avg",)
    update_reads_grads = False

    def __init__(self, shared_params: Params, task_params: Sequence[Params] | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 weight_decay_mode: str = "decoupled", *, num_tasks: int | None = None, foreach: bool = True) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        beta1, beta2 = group["betas"]
        exp_avgs, exp_avg_sqs = states["exp_avg"], states["exp_avg_sq"]
        if foreach:
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            return
        for g, m, v in zip(grads, exp_avgs, exp_avg_sqs):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), group["eps"]
        exp_avgs, exp_avg_sqs = states["exp_avg"], states["exp_avg_sq"]
        if foreach:
            step_sizes = [-lr / (1 - beta1**s) for s in steps]
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, [math.sqrt(1 - beta2**s) for s in steps])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
            return
        for p, m, v, s in zip(params, exp_avgs, exp_avg_sqs, steps):
            denom = (v.sqrt() / math.sqrt(1 - beta2**s)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**s))


class RMSpropWithAdaTask(AdaTaskOptimizer):
    """RMSprop (no momentum, not centred) with per-task accumulators (docs/methods.md, "AdaTask")."""

    plain = torch.optim.RMSprop

    state_names = ("square_avg",)

    def __init__(self, shared_params: Params, task_params: Sequence[Params] | None = None, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 weight_decay_mode: str = "decoupled", *, num_tasks: int | None = None, foreach: bool = True) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        square_avgs = states["square_avg"]
        if foreach:
            torch._foreach_mul_(square_avgs, group["alpha"])
            torch._foreach_addcmul_(square_avgs, grads, grads, 1 - group["alpha"])
            return
        for g, v in zip(grads, square_avgs):
            v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        _step_over_root(group, params, grads, states["square_avg"], foreach)


class AdagradWithAdaTask(AdaTaskOptimizer):
    """Adagrad with per-task accumulated squared gradients (docs/methods.md, "AdaTask")."""

    plain = torch.optim.Adagrad

    state_names = ("sum",)

    def __init__(self, shared_params: Params, task_params: Sequence[Params] | None = None, lr: float = 1e-2,
                 eps: float = 1e-10, weight_decay: float = 0.0, weight_decay_mode: str = "decoupled", *,
                 num_tasks: int | None = None, foreach: bool = True) -> None:
        defaults = dict(lr=lr, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        sums = states["sum"]
        if foreach:
            torch._foreach_addcmul_(sums, grads, grads, 1.0)
            return
        for g, s in zip(grads, sums):
            s.addcmul_(g, g, value=1.0)

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        _step_over_root(group, params, grads, states["sum"], foreach)


def _step_over_root(group, params, grads, accumulators, foreach):
    """p ← p − lr · g / (√a + eps): the step of RMSprop (a the running mean of g²) and AdaGrad (a the sum)."""
    if foreach:
        denom = torch._foreach_sqrt(accumulators)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, grads, denom, -float(group["lr"]))
        return
    for p, g, a in zip(params, grads, accumulators):
        p.addcdiv_(g, a.sqrt().add_(group["eps"]), value=-float(group["lr"]))
