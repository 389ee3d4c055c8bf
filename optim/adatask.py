"""AdaTask: task-wise adaptive learning rates (METHODS §3).

Every shared parameter keeps one set of adaptive moments per task, stacked along a
leading task axis (state tensors of shape (K, *param.shape)); each task takes its own
adaptive step from its own gradient and the parameter moves by the sum of the K steps.
Task-specific parameters get the plain base optimizer on their `.grad`, stored the same
way with a task axis of length 1, so one code path serves both.

The base optimizers follow torch.optim exactly (ε placement, bias correction, defaults),
so one task reproduces torch.optim.Adam / RMSprop / Adagrad.
"""
import math

import torch

from .task_gradients import task_gradients

WEIGHT_DECAY_MODES = ("decoupled", "l2")


def _as_groups(params, task):
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
    """

    state_names = ()

    def __init__(self, shared_params, task_params=None, *, num_tasks=None, defaults, foreach=True):
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

    def shared_params(self):
        return [p for g in self.param_groups if g["task"] is None for p in g["params"]]

    def task_params(self, k):
        return [p for g in self.param_groups if g["task"] == k for p in g["params"]]

    def backward(self, losses):
        """K backward passes: keeps the per-task gradients of the shared parameters for
        `step()` and accumulates each task's own parameter gradients into `.grad`."""
        if len(losses) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} task losses, got {len(losses)}")
        self._task_grads = task_gradients(
            losses, self.shared_params(), [self.task_params(k) for k in range(self.num_tasks)]
        )

    def zero_grad(self, set_to_none=True):
        super().zero_grad(set_to_none)
        self._task_grads = None

    @torch.no_grad()
    def step(self, closure=None, task_grads=None):
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
            states_k = {name: [self.state[p][name][k] for p in params] for name in self.state_names}
            update = self._update_foreach if self.foreach else self._update_single
            update(group, params, grads_k, states_k, steps)

    def _initial_state(self, name, p, slots):
        return torch.zeros((slots, *p.shape), dtype=p.dtype, device=p.device)


class AdamWithAdaTask(AdaTaskOptimizer):
    """Adam with per-task moments for the shared parameters (METHODS §3)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, shared_params, task_params=None, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0, weight_decay_mode="decoupled", *, num_tasks=None, foreach=True):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def _update_foreach(group, params, grads, states, steps):
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), group["eps"]
        exp_avgs, exp_avg_sqs = states["exp_avg"], states["exp_avg_sq"]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        step_sizes = [-lr / (1 - beta1**s) for s in steps]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [math.sqrt(1 - beta2**s) for s in steps])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)

    @staticmethod
    def _update_single(group, params, grads, states, steps):
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), group["eps"]
        for p, g, m, v, s in zip(params, grads, states["exp_avg"], states["exp_avg_sq"], steps):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / math.sqrt(1 - beta2**s)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**s))


class RMSpropWithAdaTask(AdaTaskOptimizer):
    """RMSprop (no momentum, not centred) with per-task accumulators (METHODS §3)."""

    state_names = ("square_avg",)

    def __init__(self, shared_params, task_params=None, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, weight_decay_mode="decoupled", *, num_tasks=None, foreach=True):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def _update_foreach(group, params, grads, states, steps):
        square_avgs = states["square_avg"]
        torch._foreach_mul_(square_avgs, group["alpha"])
        torch._foreach_addcmul_(square_avgs, grads, grads, 1 - group["alpha"])
        denom = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, grads, denom, -float(group["lr"]))

    @staticmethod
    def _update_single(group, params, grads, states, steps):
        for p, g, v in zip(params, grads, states["square_avg"]):
            v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
            p.addcdiv_(g, v.sqrt().add_(group["eps"]), value=-float(group["lr"]))


class AdagradWithAdaTask(AdaTaskOptimizer):
    """Adagrad with per-task accumulated squared gradients (METHODS §3)."""

    state_names = ("sum",)

    def __init__(self, shared_params, task_params=None, lr=1e-2, eps=1e-10,
                 weight_decay=0.0, weight_decay_mode="decoupled", *, num_tasks=None, foreach=True):
        defaults = dict(lr=lr, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def _update_foreach(group, params, grads, states, steps):
        sums = states["sum"]
        torch._foreach_addcmul_(sums, grads, grads, 1.0)
        denom = torch._foreach_sqrt(sums)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, grads, denom, -float(group["lr"]))

    @staticmethod
    def _update_single(group, params, grads, states, steps):
        for p, g, s in zip(params, grads, states["sum"]):
            s.addcmul_(g, g, value=1.0)
            p.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-float(group["lr"]))
