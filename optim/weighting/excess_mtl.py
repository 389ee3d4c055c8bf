"""ExcessMTL through torchjd's ExcessMTLWeighting (docs/methods.md, "ExcessMTL")."""
import torch

from .base import Option, WeightingMethod, flat_gradients


class OfficialExcessMTL:
    """The authors' ExcessMTL weighting (yifei-he/ExcessMTL, LibMTL/weighting/ExcessMTL.py, as
    LibMTL's): weights start at 1 (they sum to K); the first step's excess risks e⁰ are the
    baseline and leave the weights as they are; each later step
    w ← K · w exp(η e / e⁰) / Σ_j w_j exp(η e_j / e⁰_j) (no epsilon in e / e⁰), computed in
    log space (a softmax), which is the same up to rounding and saturates instead of
    overflowing. n_warmup_steps > 0 (not in the authors' code, the paper's Appendix C.1):
    the weights stay 1 for that many steps, the baseline is their mean e, and the weights
    update from the step after. Its state has the attributes of torchjd's ExcessMTLWeighting,
    so checkpoints of both read alike."""

    def __init__(self, robust_step_size, n_warmup_steps):
        self.robust_step_size = robust_step_size
        self.n_warmup_steps = n_warmup_steps
        self.reset()

    def reset(self):
        self._weights = self._sq_grad_sum = self._initial_w = self._warmup_w_sum = None
        self._n_steps = 0
        self._state_key = None

    def to(self, device):
        for key in ExcessMTL._BUFFERS:
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, value.to(device))
        return self

    def __call__(self, matrix):
        key = (*matrix.shape, matrix.dtype, matrix.device)
        if self._state_key != key or self._sq_grad_sum is None:
            self.reset()
            self._sq_grad_sum = matrix.new_zeros(matrix.shape)
            self._warmup_w_sum = matrix.new_zeros(matrix.shape[0])
            self._weights = matrix.new_ones(matrix.shape[0])
            self._state_key = key
        squared = matrix ** 2
        self._sq_grad_sum.add_(squared)
        excess = (squared / torch.sqrt(self._sq_grad_sum + 1e-7)).sum(1)
        if self._n_steps < self.n_warmup_steps:
            self._warmup_w_sum.add_(excess)
            self._n_steps += 1
            return self._weights
        self._n_steps += 1
        if self._initial_w is None:
            if self.n_warmup_steps == 0:
                self._initial_w = excess  # the authors' first step: the baseline, no update
                return self._weights
            self._initial_w = self._warmup_w_sum / self.n_warmup_steps
        ratio = excess / self._initial_w
        count = self._weights.shape[0]
        self._weights = count * torch.softmax(torch.log(self._weights) + self.robust_step_size * ratio, dim=0)
        return self._weights


class ExcessMTL(WeightingMethod):
    """Weights moved towards the tasks with the largest excess risk: each step
    e_k = Σ_p g_kp² / √(S_kp + 1e-7), S the running sum of squared gradients (the AdaGrad
    diagonal Hessian estimate of Eq. 6–7), e⁰ the first step's e; then the exponentiated
    update w ← w exp(η e / e⁰), normalised (Eq. 9).

    convention "official" (default): the authors' code and LibMTL's (OfficialExcessMTL): w
    from 1, summing to K, unchanged at the first step, e / e⁰ without epsilon, and the heads
    get w_k ∇L_k (they backpropagate Σ w_k L_k). "torchjd": torchjd's ExcessMTLWeighting, w
    from 1/K summing to 1, updated from the first step with the raw e⁰, e / (e⁰ + 1e-7) later
    (use it with --head-grads own, as torchjd's mtl_backward).

    The K×P Jacobian and S stay in the gradients' dtype and on their device: S is the one
    P-sized state (K·P floats, as in the authors' code), float32 halves it against float64,
    and e is a sum of positive terms, so float32 loses nothing that matters to the weights."""

    default_head_grads = "weighted"  # the authors' code backpropagates Σ w_k L_k
    name = "excess_mtl"
    fidelity = "matches the authors' code (w from 1, summing to K, first step the baseline; heads w_k ∇L_k); " \
               "torchjd's convention is a switch"
    paper = "He et al. 2024, Robust Multi-Task Learning with Excess Risks (ICML)"
    needs = "gradients (K×P Jacobian)"
    cost = "O(KP) + a K×P squared-gradient sum kept in memory"
    needs_grads = True
    OPTIONS = {
        "robust_step_size": Option(float, 1e-2, "step size η of the exponentiated weight update"),
        "n_warmup_steps": Option(int, 0, "steps with constant weights whose mean excess risk is the baseline; "
                                 "0: the first step's"),
        "convention": Option(str, "official", "'official' (the authors' code and LibMTL: weights from 1, summing to "
                             "K, the first step only sets the baseline) or 'torchjd' (from 1/K, summing to 1, "
                             "updated from the first step)", ("official", "torchjd"), legacy="torchjd"),
    }

    _BUFFERS = ("_weights", "_sq_grad_sum", "_initial_w", "_warmup_w_sum")

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        if self.convention == "official":
            self.torchjd_weighting = OfficialExcessMTL(self.robust_step_size, self.n_warmup_steps)
        else:
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
