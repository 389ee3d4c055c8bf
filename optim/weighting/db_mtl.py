"""DB-MTL: dual-balancing multi-task learning (docs/methods.md, "DB-MTL")."""
import torch

from .base import Contributions, Option, WeightingMethod

EPS = 1e-8  # in log(L_k + EPS) and in the norm ratio, LibMTL's constant


class DBMTL(WeightingMethod):
    """Loss balance: each task descends log(L_k + EPS), whose shared gradient is
    ĝ_k = g_k / (L_k + EPS). Gradient balance: an EMA per task, m_k ← ĝ_k + β_t (m_k − ĝ_k)
    with β_t = β / t^σ at step t = 1, 2, … (m_k starts at 0, no bias correction), then every
    m_k is rescaled to the largest EMA norm: contribution k = (max_j ‖m_j‖ / (‖m_k‖ + EPS)) m_k,
    the norms over all shared parameters together. The update is their sum.

    The EMA holds past steps, so the contributions are no mixing of this step's gradients
    (`mixes = False`, no mixing matrix). The EMAs (K × the shared parameters, the parameters'
    dtype and device) are state. Task k's own parameters get ∇log(L_k + EPS) = ∇L_k / (L_k + EPS)
    as in LibMTL (--head-grads weighted, head_weights = 1 / (L + EPS)); --head-grads own gives
    them ∇L_k (before issue 24).
    Per step: the per-task gradients; K EMA updates and norms over the shared parameters.
    """

    name = "db_mtl"
    fidelity = "matches LibMTL (4336804)"
    paper = "Lin et al. 2023, Dual-Balancing for Multi-Task Learning (arXiv:2308.12029)"
    needs = "gradients"
    cost = "K EMAs of the shared gradients (K×P memory), O(KP) arithmetic"
    needs_grads = True
    mixes = False
    default_head_grads = "weighted"  # LibMTL backpropagates log(L_k + 1e-8): the heads get ∇L_k / (L_k + 1e-8)
    OPTIONS = {
        "beta": Option(float, 0.9, "EMA factor β of the task gradients (LibMTL's DB_beta)"),
        "beta_sigma": Option(float, 0.0, "decay σ: step t uses β / t^σ (LibMTL's DB_beta_sigma)"),
    }

    def __init__(self, num_tasks, **options):
        super().__init__(num_tasks, **options)
        self.step = 0
        self.buffers = None  # K lists aligned with the shared parameters: the EMAs m_k, None where never reached
        self.loss_balance = None  # this step's 1 / (L_k + EPS), the heads' factors

    def contributions(self, ctx):
        grads = ctx.grads
        if grads is None:
            raise ValueError("db_mtl needs per-task gradients: StepContext.grads is None")
        self.step += 1
        beta = self.beta / self.step ** self.beta_sigma
        if self.buffers is None:
            self.buffers = [[None] * len(grads[0]) for _ in range(self.num_tasks)]
        inverse = 1.0 / (ctx.losses.detach() + EPS)
        self.loss_balance = inverse
        device = inverse.device
        squares = []
        for k in range(self.num_tasks):
            total = None
            for i, g in enumerate(grads[k]):
                buffer = self.buffers[k][i]
                if g is None and buffer is None:
                    continue
                if buffer is not None and g is not None:
                    buffer = buffer.to(g)
                log_grad = torch.zeros_like(buffer) if g is None else g * inverse[k].to(g)
                buffer = torch.zeros_like(log_grad) if buffer is None else buffer
                buffer = log_grad + beta * (buffer - log_grad)
                self.buffers[k][i] = buffer
                square = buffer.double().pow(2).sum()
                total = square if total is None else total + square
            squares.append(torch.zeros((), dtype=torch.float64, device=device) if total is None else total.to(device))
        norms = torch.stack(squares).sqrt()
        scales = norms.max() / (norms + EPS)
        contributions = [[None if b is None else b * scales[k].to(b) for b in self.buffers[k]]
                         for k in range(self.num_tasks)]
        return Contributions(contributions, None)

    def head_weights(self, mixing):
        """Task k's head gets ∇log(L_k + EPS) = ∇L_k / (L_k + EPS) (--head-grads weighted)."""
        return self.loss_balance

    def state_dict(self):
        buffers = None if self.buffers is None else [[None if b is None else b.detach().clone() for b in task]
                                                     for task in self.buffers]
        return {"step": self.step, "buffers": buffers}

    def load_state_dict(self, state):
        self.step = state["step"]
        self.buffers = None if state["buffers"] is None else [[None if b is None else b.clone() for b in task]
                                                              for task in state["buffers"]]
