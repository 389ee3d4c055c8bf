"""torch.optim.SGD (without momentum) as a base of the registry: a functional core and no
per-task state, so the registry offers its plain form only (with one slot per task, AdaTask
over SGD would be SGD itself)."""
import torch


class SGDCore:
    """Δ_k = −η g_k: what the AU tracker splits a plain SGD step into."""

    plain = torch.optim.SGD
    state_names = linear_state_names = ()

    @staticmethod
    def update_state(group, grads, states, steps, *, foreach=True):
        pass

    @staticmethod
    def apply_update(group, params, grads, states, steps, *, foreach=True):
        torch._foreach_add_(params, grads, alpha=-float(group["lr"]))
