"""A toy optimizer base for tests/test_extension.py: Adamax with per-task moments."""
import torch

from .adatask import AdaTaskOptimizer


class AdamaxWithAdaTask(AdaTaskOptimizer):
    plain = torch.optim.Adamax
    state_names = ("exp_avg", "exp_inf")
    linear_state_names = ("exp_avg",)
    update_reads_grads = False

    def __init__(self, shared_params, task_params=None, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 weight_decay_mode="decoupled", *, num_tasks=None, foreach=True):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(shared_params, task_params, num_tasks=num_tasks, defaults=defaults, foreach=foreach)

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        beta1, beta2 = group["betas"]
        for g, m, u in zip(grads, states["exp_avg"], states["exp_inf"]):
            m.lerp_(g, 1 - beta1)
            torch.maximum(u.mul_(beta2), g.abs().add_(group["eps"]), out=u)

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        beta1 = group["betas"][0]
        for p, m, u, s in zip(params, states["exp_avg"], states["exp_inf"], steps):
            p.addcdiv_(m, u, value=-float(group["lr"]) / (1 - beta1**s))
