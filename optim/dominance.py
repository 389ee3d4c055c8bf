"""Task dominance of the shared parameters: AU / rAU (METHODS §3).

For every shared parameter element and task k, Δ_k is the part of an optimizer step
caused by task k. AU_k ← β AU_k + (1−β) Δ_k² remembers how much task k has recently moved
the element, and rAU_k = AU_k / Σ_j AU_j how much of the element's movement is task k's:
balanced means rAU_k ≈ 1/K, dominated means one task's rAU near 1.

Δ_k per optimizer, read from the optimizer's state after its step:
- AdaTask (Adam, RMSprop, Adagrad): task k's own step, from task k's moments.
- torch.optim.Adam: −η (m_k/(1−β1^t)) / (sqrt(v̂)+ε), m_k this tracker's EMA of g_k (m is
  linear, so Σ_k m_k is Adam's exp_avg) and v̂ Adam's shared bias-corrected exp_avg_sq.
- torch.optim.RMSprop / Adagrad: −η g_k / (sqrt(v)+ε) with the shared accumulator v.
- torch.optim.SGD: −η g_k.
Under a plain optimizer the Δ_k sum to the actual step; under AdaTask they sum to it less
the decoupled weight decay, which no task causes.

Wiring: build the tracker beside the optimizer (and checkpoint them together: plain Adam's
m_k must start with Adam's exp_avg), then after every `optimizer.step(...)` call
`tracker.update(task_grads)` with the per-task contributions that step consumed (after
any clipping), K lists aligned with the shared parameters.
"""
import csv
import math

import torch

from .adatask import AdagradWithAdaTask, AdamWithAdaTask, AdaTaskOptimizer, RMSpropWithAdaTask

QUANTILES = (0.1, 0.5, 0.9)
CSV_FIELDS = ("epoch", "layer_index", "layer", "task", "mean_rau", "dominated", "q10", "q50", "q90")

# Optimizer class → (its accumulator of squared gradients, whether it is Adam-like: bias
# corrections and a first moment). AdaTask accumulators carry a leading task axis.
ACCUMULATORS = {
    AdamWithAdaTask: ("exp_avg_sq", True),
    RMSpropWithAdaTask: ("square_avg", False),
    AdagradWithAdaTask: ("sum", False),
    torch.optim.Adam: ("exp_avg_sq", True),
    torch.optim.RMSprop: ("square_avg", False),
    torch.optim.Adagrad: ("sum", False),
    torch.optim.SGD: (None, False),
}
# Plain-optimizer options that change the update in ways Δ_k cannot split by task:
# option → its only supported value.
PLAIN_OPTIONS = {"weight_decay": 0, "maximize": False, "amsgrad": False, "momentum": 0, "centered": False,
                 "lr_decay": 0}


def relative(au):
    """rAU along the task axis (dim 0); 1/K where no task has moved the element."""
    total = au.sum(0, keepdim=True)
    return torch.where(total > 0, au / total, 1.0 / au.shape[0])


class DominanceTracker:
    """AU_k per shared parameter element (float32 tensors of shape (K, *param.shape)).

    optimizer: an AdaTask optimizer, or torch.optim Adam / RMSprop / Adagrad / SGD.
    shared_layers: [(layer name, [params])] ordered input → output (model.shared_layers()).
    shared_params: the order of the shared parameters in `update`'s task_grads; by default
        the order they have in the optimizer's param groups (for an AdaTask optimizer that is
        `optimizer.shared_params()`, the order `step(task_grads=...)` wants; for a plain one
        built over model.parameters() it is model.shared_parameters()).
    dominated_threshold: an element counts as dominated by task k where rAU_k exceeds it.
    """

    def __init__(self, optimizer, shared_layers, num_tasks, beta=0.999, *, shared_params=None,
                 dominated_threshold=0.9):
        if type(optimizer) not in ACCUMULATORS:
            raise ValueError(f"AU tracking supports the AdaTask optimizers and torch.optim Adam, RMSprop, Adagrad "
                             f"and SGD, not {type(optimizer).__name__}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.optimizer = optimizer
        self.num_tasks = num_tasks
        self.beta = beta
        self.dominated_threshold = dominated_threshold
        self.adatask = isinstance(optimizer, AdaTaskOptimizer)
        self.accumulator, self.adam_like = ACCUMULATORS[type(optimizer)]
        self.layers = [(name, list(params)) for name, params in shared_layers]
        self._group = {p: g for g in optimizer.param_groups for p in g["params"]}
        self.params = self._check_params(shared_params)
        self._check_options()
        self.au = [torch.zeros((num_tasks, *p.shape), dtype=torch.float32, device=p.device) for p in self.params]
        # Plain Adam's per-task first moments, in the dtype of Adam's exp_avg they sum to.
        self.first_moments = ([torch.zeros((num_tasks, *p.shape), dtype=p.dtype, device=p.device)
                               for p in self.params] if self.adam_like and not self.adatask else [])
        self._index = {p: i for i, p in enumerate(self.params)}

    # ---- construction checks -------------------------------------------------------

    def _check_params(self, shared_params):
        in_layers = [p for _, params in self.layers for p in params]
        empty = [name for name, params in self.layers if not params]
        if empty:
            raise ValueError(f"shared layers without parameters: {', '.join(empty)}")
        missing = [p for p in in_layers if p not in self._group]
        if missing:
            raise ValueError(f"{len(missing)} shared-layer parameters are not in the optimizer")
        if self.adatask and any(self._group[p]["task"] is not None for p in in_layers):
            raise ValueError("a shared-layer parameter is in one of the AdaTask optimizer's task groups")
        if shared_params is None:
            layer_set = set(in_layers)
            shared_params = [p for g in self.optimizer.param_groups for p in g["params"] if p in layer_set]
        shared_params = list(shared_params)
        if len(shared_params) != len(in_layers) or set(shared_params) != set(in_layers):
            raise ValueError("shared_params must be exactly the parameters of shared_layers (each once)")
        return shared_params

    def _check_options(self):
        groups = {id(self._group[p]): self._group[p] for p in self.params}.values()
        for group in groups:
            if self.adatask:
                # L2 decay is fed to the moments after the step moved θ: not recoverable for the
                # optimizers whose Δ_k uses g_k directly. Decoupled decay belongs to no task.
                if group["weight_decay"] and group["weight_decay_mode"] == "l2" and not self.adam_like:
                    raise ValueError(f"AU tracking under {type(self.optimizer).__name__} supports decoupled "
                                     "weight decay only, not l2")
                continue
            for option, supported in PLAIN_OPTIONS.items():
                if group.get(option, supported) != supported:
                    raise ValueError(f"AU tracking under torch.optim.{type(self.optimizer).__name__} needs "
                                     f"{option}={supported!r}, got {group[option]!r}")

    # ---- per step --------------------------------------------------------------------

    @torch.no_grad()
    def update(self, task_grads):
        """Fold this step's Δ_k² into AU. Call right after optimizer.step() with the K lists of
        per-task gradients (contributions) of the shared parameters that step consumed; None
        counts as zero, a parameter no task reached was not stepped and is left alone."""
        stepped = self._stepped(task_grads)
        if not stepped:
            return
        if self.first_moments:
            self._update_first_moments(task_grads, stepped)
        au = [self.au[i] for i in stepped]
        for k, delta in enumerate(self._task_steps(task_grads, stepped)):
            torch._foreach_mul_(delta, delta)
            torch._foreach_lerp_([a[k] for a in au], [d.float() for d in delta], 1 - self.beta)

    @torch.no_grad()
    def task_steps(self, task_grads):
        """Δ as K lists aligned with the shared parameters (None where not stepped), from the
        state after the last `update(task_grads)`: what that step's update was made of."""
        stepped = self._stepped(task_grads)
        out = [[None] * len(self.params) for _ in range(self.num_tasks)]
        if not stepped:
            return out
        for k, delta in enumerate(self._task_steps(task_grads, stepped)):
            for i, d in zip(stepped, delta):
                out[k][i] = d
        return out

    def _stepped(self, task_grads):
        if len(task_grads) != self.num_tasks or any(len(g) != len(self.params) for g in task_grads):
            raise ValueError(f"task_grads must be {self.num_tasks} lists of {len(self.params)} gradients "
                             "(one per shared parameter)")
        return [i for i in range(len(self.params)) if any(g[i] is not None for g in task_grads)]

    def _task_grads(self, task_grads, k, stepped):
        return [torch.zeros_like(self.params[i]) if task_grads[k][i] is None else task_grads[k][i]
                for i in stepped]

    def _update_first_moments(self, task_grads, stepped):
        weights = [1 - self._group[self.params[i]]["betas"][0] for i in stepped]
        for k in range(self.num_tasks):
            moments = [self.first_moments[i][k] for i in stepped]
            torch._foreach_lerp_(moments, self._task_grads(task_grads, k, stepped), weights)

    def _task_steps(self, task_grads, stepped):
        """Yields Δ_k (a list over the stepped parameters) for k = 0..K−1: a per-element
        factor −η·(bias correction)/denominator times task k's numerator (m_k or g_k)."""
        factors = self._step_factors(stepped)
        for k in range(self.num_tasks):
            factors_k = [f[k] for f in factors] if self.adatask else factors
            yield torch._foreach_mul(self._numerators(task_grads, k, stepped), factors_k)

    def _numerators(self, task_grads, k, stepped):
        if not self.adam_like:
            return self._task_grads(task_grads, k, stepped)
        if self.adatask:
            return [self.optimizer.state[self.params[i]]["exp_avg"][k] for i in stepped]
        return [self.first_moments[i][k] for i in stepped]

    def _step_factors(self, stepped):
        """−η/(1−β1^t) / (sqrt(v/(1−β2^t)) + ε) for Adam, −η / (sqrt(v) + ε) for RMSprop and
        Adagrad, −η for SGD (scalars); v has a task axis under AdaTask. The ε placement and
        bias corrections are torch.optim's, as in optim/adatask.py."""
        params = [self.params[i] for i in stepped]
        groups = [self._group[p] for p in params]
        scales = [-float(g["lr"]) for g in groups]
        if self.accumulator is None:
            return scales
        states = [self.optimizer.state[p] for p in params]
        if self.adam_like:
            steps = [float(s["step"]) for s in states]
            scales = [s / (1 - g["betas"][0] ** t) for s, g, t in zip(scales, groups, steps)]
        factors = torch._foreach_sqrt([s[self.accumulator] for s in states])
        if self.adam_like:
            torch._foreach_div_(factors, [math.sqrt(1 - g["betas"][1] ** t) for g, t in zip(groups, steps)])
        torch._foreach_add_(factors, [g["eps"] for g in groups])
        torch._foreach_reciprocal_(factors)
        torch._foreach_mul_(factors, scales)
        return factors

    # ---- summaries -------------------------------------------------------------------

    @torch.no_grad()
    def layer_summary(self):
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

    def state_dict(self):
        return {"num_tasks": self.num_tasks, "beta": self.beta, "au": [a.clone() for a in self.au],
                "first_moments": [m.clone() for m in self.first_moments]}

    def load_state_dict(self, state):
        if state["num_tasks"] != self.num_tasks or state["beta"] != self.beta:
            raise ValueError(f"AU state of {state['num_tasks']} tasks with beta={state['beta']}, this tracker has "
                             f"{self.num_tasks} tasks and beta={self.beta}")
        for name in ("au", "first_moments"):
            mine, theirs = getattr(self, name), state[name]
            if [t.shape for t in mine] != [t.shape for t in theirs]:
                raise ValueError(f"AU state: {name} shapes do not match this tracker's shared parameters")
            for target, source in zip(mine, theirs):
                target.copy_(source)


def csv_rows(summary, epoch, task_names):
    """One epoch's `layer_summary()` rows as au.csv rows (floats to 6 significant digits)."""
    return [{**row, **{key: f"{value:.6g}" for key, value in row.items() if isinstance(value, float)},
             "epoch": epoch, "task": task_names[row["task"]]} for row in summary]


def write_csv(file, rows):
    """au.csv: the header, then `csv_rows` of every epoch so far. The run writes the whole
    file each epoch (through a temporary file), so a kill never leaves it torn."""
    writer = csv.DictWriter(file, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
