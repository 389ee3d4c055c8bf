"""ExcessMTL through torchjd's ExcessMTLWeighting (docs/methods.md, "ExcessMTL")."""
import torch

from .base import Option, WeightingMethod, flat_gradients


class ExcessMTL(WeightingMethod):
    """Weights moved towards the tasks with the largest excess risk: each step
    e_k = Σ_p g_kp² / √(S_kp + 1e-7), S the running sum of squared gradients (the AdaGrad
    diagonal Hessian estimate of Eq. 6–7); the first step's e is the baseline e⁰; then
    w ← softmax(log w + η e / (e⁰ + 1e-7)) (Eq. 9), from w = 1/K.

    The K×P Jacobian and S stay in the gradients' dtype and on their device: S is the one
    P-sized state (K·P floats, as in the authors' code), float32 halves it against float64,
    and e is a sum of positive terms, so float32 loses nothing that matters to the weights."""

    name = "excess_mtl"
    fidelity = "differs: weights sum to 1 and update from the first step (torchjd)"
    paper = "He et al. 2024, Robust Multi-Task Learning with Excess Risks (ICML)"
    needs = "gradients (K×P Jacobian)"
    cost = "O(KP) + a K×P squared-gradient sum kept in memory"
    needs_grads = True
    OPTIONS = {
        "robust_step_size": Option(float, 1e-2, "step size η of the exponentiated weight update"),
        "n_warmup_steps": Option(int, 0, "steps with w = 1/K whose mean excess risk is the baseline; 0: the first step's"),
    }

    _BUFFERS = ("_weights", "_sq_grad_sum", "_initial_w", "_warmup_w_sum")

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        from torchjd.aggregation import ExcessMTLWeighting  # lazy: see torchjd_gram.py
        self.torchjd_weighting = ExcessMTLWeighting(robust_step_size=self.robust_step_size,
                                                    n_warmup_steps=self.n_warmup_steps)

    def weights(self, ctx):
        if ctx.grads is None:
            raise ValueError("excess_mtl needs per-task gradients: StepContext.grads is None")
        matrix = flat_gradients(ctx.grads)[0].detach()  # a parameter no task reaches takes no column
        weighting = self.torchjd_weighting
        key = weighting._state_key
        if key is not None and key[:3] == (*matrix.shape, matrix.dtype) and key[3] != matrix.device:
            weighting.to(matrix.device)  # a checkpoint loaded elsewhere: keep its state, not a reset
            weighting._state_key = (*key[:3], matrix.device)
        with torch.no_grad():
            weights = weighting(matrix)
        device = ctx.gram.device if ctx.gram is not None else matrix.device
        return weights.to(device=device, dtype=torch.float64 if ctx.gram is None else ctx.gram.dtype)

    def state_dict(self):
        weighting = self.torchjd_weighting
        state = {key: None if getattr(weighting, key) is None else getattr(weighting, key).clone()
                 for key in self._BUFFERS}
        state["n_steps"] = weighting._n_steps
        return state

    def load_state_dict(self, state):
        weighting = self.torchjd_weighting
        weighting.reset()
        for key in self._BUFFERS:
            setattr(weighting, key, None if state[key] is None else state[key].clone())
        weighting._n_steps = int(state["n_steps"])
        sq = weighting._sq_grad_sum
        if sq is not None:
            weighting._state_key = (*sq.shape, sq.dtype, sq.device)
