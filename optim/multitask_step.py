"""One optimisation step from K task losses: the data flow of docs/design.md, "Training step".

losses → per-task gradients of the shared parameters (K backward passes, only when
someone uses them) → the --weighting method's K×K mixing matrix A (contribution
i = Σ_j A_ij g_j, from the Gram matrix where it can) → optional clipping → the --method
optimizer: a plain optimizer applies the sum of the contributions, an AdaTask optimizer
feeds contribution i into task i's moments.

Loss-only methods with a plain optimizer take one backward of Σ w_k L_k: nothing pays for
per-task gradients it does not use.

Under torchrun the losses are each process's share of the global losses (engine.py), and
every gradient is summed over the processes right after its backward, in one flat
all-reduce (distributed.all_reduce_sum): the method, the clipping and the optimizer then see
the global batch's gradients, identically on every process.
"""
from dataclasses import replace

import torch

from .adatask import AdaTaskOptimizer
from .distributed import all_reduce_sum, world_size
from .task_gradients import task_gradients
from .weighting.base import gram_matrix


def clip_coefficient(total_norm, max_norm):
    """torch.nn.utils.clip_grad_norm_'s factor, so every method is clipped the same way."""
    return min(1.0, max_norm / (total_norm + 1e-6))


def diagnostics(gram, mixing):
    """Conflict and dominance at a glance: the cosine between the task gradients and their
    norm ratio (K = 2: task 0 over task 1; otherwise every pair), and the method's effective
    weights α = column sums of A (the update is Σ_j α_j g_j; none for a method that is no
    mixing)."""
    norms = gram.diagonal().clamp(min=0).sqrt()
    out = {} if mixing is None else {f"weight/{j}": float(a) for j, a in enumerate(mixing.sum(0))}
    for i in range(len(norms)):
        for j in range(i + 1, len(norms)):
            denom = float(norms[i] * norms[j])
            out[f"cosine/{i}-{j}"] = float(gram[i, j]) / denom if denom > 0 else 0.0
            out[f"norm_ratio/{i}-{j}"] = float(norms[i] / norms[j]) if norms[j] > 0 else float("inf")
    return out


class MultiTaskStep:
    """Wires losses, the weighting method and the optimizer for one model.

    clip_grad_norm: clip the total norm of the final update gradient (shared contributions
    summed, plus the task-specific gradients) to this value, the same for every method.
    The task heads get their plain ∇L_k, or α_k ∇L_k where the method's head_grads says
    "weighted" (base.HEAD_GRADS).
    tracker: an optional optim.dominance.DominanceTracker, fed the contributions actually
    applied after every step; it needs per-task gradients, so with a plain optimizer and a
    loss-only method it turns the one summed backward into K per-task ones.
    """

    def __init__(self, optimizer, weighting, shared_params, task_params, clip_grad_norm=None, tracker=None):
        self.optimizer = optimizer
        self.weighting = weighting
        self.shared_params = list(shared_params)
        self.task_params = [list(p) for p in task_params]
        self.clip_grad_norm = clip_grad_norm
        self.tracker = tracker
        self.adatask = isinstance(optimizer, AdaTaskOptimizer)
        weighting.check_head_grads()

    @property
    def computes_task_gradients(self):
        return self.adatask or self.weighting.needs_grads or self.tracker is not None

    def __call__(self, losses, ctx, want_diagnostics=False):
        """The update of one step; the method's hooks (after_step, end_epoch) are the
        engine's (optim/engine.py), which calls this.

        losses: K scalar losses (a list, so each task's backward starts at its own loss).
        ctx: a StepContext with epoch, step, lr, the losses' values (None: taken from `losses`;
            the engine gives the global batch's) and, if the method needs it, losses_after.
        want_diagnostics: return the diagnostics dict of this step (else an empty one); a step
        that takes one summed backward then computes the per-task gradients for them alone."""
        if ctx.losses is None:
            ctx = replace(ctx, losses=torch.stack([l.detach() for l in losses]))
        self.optimizer.zero_grad(set_to_none=True)
        if not self.computes_task_gradients:
            weights = self.weighting.weights(ctx).to(losses[0].device)
            info = self._probe_diagnostics(losses, weights) if want_diagnostics else {}
            sum(w * l for w, l in zip(weights, losses)).backward()
            self._sum_over_processes([])
            self._clip_plain()
            self.optimizer.step()
            return info
        if self.weighting.needs_grads:
            grads = self._sum_over_processes(task_gradients(losses, self.shared_params, self.task_params))
            ctx = replace(ctx, grads=grads, gram=gram_matrix(grads))
            grads, mixing = self.weighting.contributions(ctx)
            factors = self.weighting.head_factors(mixing)
            if factors is not None:
                self._weight_heads(factors)
        else:  # loss-only weights under AdaTask: each task's backward of its weighted loss
            weights = self.weighting.weights(ctx).to(losses[0].device)
            grads = self._sum_over_processes(
                task_gradients([w * l for w, l in zip(weights, losses)], self.shared_params, self.task_params))
            mixing = torch.diag(weights)
            if want_diagnostics:
                ctx = replace(ctx, gram=gram_matrix(grads))
        info = diagnostics(ctx.gram, mixing) if want_diagnostics else {}
        self._clip_contributions(grads)
        if self.adatask:
            self.optimizer.step(task_grads=grads)
        else:
            for i, p in enumerate(self.shared_params):
                parts = [task[i] for task in grads if task[i] is not None]
                p.grad = torch.stack(parts).sum(0) if parts else None
            self.optimizer.step()
        if self.tracker is not None:
            self.tracker.update(grads)
        return info

    def _sum_over_processes(self, grads, with_params=True):
        """Under torchrun: the K per-task gradient lists and (with_params) every parameter's
        .grad summed over the processes in one flat collective; returns the summed lists
        (`grads` itself with one process)."""
        if world_size() == 1:
            return grads
        params = self.shared_params + [p for task in self.task_params for p in task] if with_params else []
        per_task = [g for task in grads for g in task]
        summed = all_reduce_sum(per_task + [p.grad for p in params])
        for p, g in zip(params, summed[len(per_task):]):
            p.grad = g
        n = len(self.shared_params)
        return [summed[k * n:(k + 1) * n] for k in range(len(grads))]

    def _weight_heads(self, alphas):
        """Task k's own gradients times α_k (--head-grads weighted), as a backward of Σ α_k L_k
        would have given them."""
        for alpha, params in zip(alphas.tolist(), self.task_params):
            torch._foreach_mul_([p.grad for p in params if p.grad is not None], alpha)

    def _probe_diagnostics(self, losses, weights):
        """The diagnostics of a step that needs no per-task gradients: they are computed on the
        side, keeping the graph and leaving every .grad alone, so the summed backward that
        follows, and so the update, is exactly the one without diagnostics. Costs K backward
        passes through the shared trunk."""
        grads = task_gradients([w * l for w, l in zip(weights, losses)], self.shared_params, keep_graph=True)
        return diagnostics(gram_matrix(self._sum_over_processes(grads, with_params=False)), torch.diag(weights))

    def _clip_plain(self):
        if self.clip_grad_norm is not None:
            params = self.shared_params + [p for task in self.task_params for p in task]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)

    def _clip_contributions(self, grads):
        if self.clip_grad_norm is None:
            return
        squares = 0.0
        for per_task in zip(*grads):
            parts = [g for g in per_task if g is not None]
            if parts:
                squares += float(torch.stack(parts).sum(0).double().pow(2).sum())
        own = [p.grad for task in self.task_params for p in task if p.grad is not None]
        squares += sum(float(g.double().pow(2).sum()) for g in own)
        coefficient = clip_coefficient(squares**0.5, self.clip_grad_norm)
        if coefficient < 1.0:
            for task in grads:
                torch._foreach_mul_([g for g in task if g is not None], coefficient)
            torch._foreach_mul_(own, coefficient)
