"""MGDA: the min-norm point of the task gradients' convex hull (docs/methods.md, "MGDA")."""
import itertools

import numpy as np
import torch

from .base import Option, gram64
from .torchjd_gram import TorchJDGramWeighting

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def gradient_scales(gram, losses, normalization):
    """The divisor of each task's gradient before the solve, as the authors' code offers them:
    1 ('none'), ‖g_k‖ ('l2'), L_k ('loss') or L_k‖g_k‖ ('loss+'). A zero divisor (a task with
    no gradient or zero loss) is taken as 1, where the authors' code would divide by zero."""
    norms = gram.diagonal().clamp(min=0).sqrt()
    losses = losses.detach().to("cpu", torch.float64)
    scales = {"none": torch.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def _segment_min(aa, ab, bb):
    """(γ, cost): the minimum over γ of ‖γa + (1 − γ)b‖² given aa = ‖a‖², ab = ⟨a, b⟩, bb = ‖b‖²,
    as the authors' MinNormSolver takes it: where the minimum is the vertex a (ab ≥ aa) it answers
    γ = 0.999 with the cost aa, at the vertex b (ab ≥ bb) γ = 0.001 with the cost bb."""
    if ab >= aa:
        return 0.999, aa
    if ab >= bb:
        return 0.001, bb
    gamma = (bb - ab) / (aa + bb - 2 * ab)
    return gamma, bb + gamma * (ab - bb)


def _onto_simplex(y):
    """The Euclidean projection of y onto the simplex, by the sorted-threshold rule."""
    ordered = np.sort(y)[::-1]
    threshold = (y.sum() - 1.0) / len(y)
    running = 0.0
    for i in range(len(y) - 1):
        running += ordered[i]
        candidate = (running - 1.0) / (i + 1)
        if candidate > ordered[i + 1]:
            threshold = candidate
            break
    return np.maximum(y - threshold, 0.0)


def _step_target(point, direction):
    """Move `point` along `direction` minus its mean by the step the authors' code takes: the
    distance to the nearest face x_k = 0 ahead (1 if none; steps of 1e-7 or less ignored), cut to
    the nearest face x_k = 1 ahead if that is nearer; then project onto the simplex."""
    centred = direction - direction.sum() / len(direction)
    down, up = centred < 0, centred > 0
    to_zero = -point[down] / centred[down]
    to_one = (1.0 - point[up]) / centred[up]
    to_zero, to_one = to_zero[to_zero > 1e-7], to_one[to_one > 1e-7]
    step = float(to_zero.min()) if len(to_zero) else 1.0
    if len(to_one):
        step = min(step, float(to_one.min()))
    return _onto_simplex(centred * step + point)


def published_min_norm_weights(gram, max_iters=250, stop=1e-5):
    """MinNormSolver.find_min_norm_element of the authors' code (Sener and Koltun), in our words:
    the best pair of vertices by _segment_min (its 0.999 / 0.001 clamp included); K = 2 stops
    there. For K ≥ 3, from that pair: projected gradient steps (_step_target from −Mw), each
    followed by an exact line search by _segment_min between the current and the target point,
    until the L1 change is below `stop`; the point before that last change is returned. The
    authors' loop never advances its iteration counter, so it has no cap; ours stops after
    max_iters steps (never reached in the tests)."""
    matrix = gram.detach().to("cpu", torch.float64).numpy()
    num_tasks = len(matrix)
    best = None
    for i, j in itertools.combinations(range(num_tasks), 2):
        gamma, cost = _segment_min(matrix[i, i], matrix[i, j], matrix[j, j])
        if best is None or cost < best[0]:
            best = (cost, i, j, gamma)
    weights = np.zeros(num_tasks)
    _, i, j, gamma = best
    weights[i], weights[j] = gamma, 1 - gamma
    if num_tasks >= 3:
        for _ in range(max_iters):
            target = _step_target(weights, -matrix @ weights)
            gamma, _ = _segment_min(weights @ matrix @ weights, weights @ matrix @ target, target @ matrix @ target)
            moved = gamma * weights + (1 - gamma) * target
            if np.abs(moved - weights).sum() < stop:
                break
            weights = moved
    return torch.from_numpy(weights).to(gram.dtype)


def min_norm_weights(gram):
    """The exact argmin of wᵀMw over the simplex, by its active sets: the optimum lies in the
    hull of an affinely independent subset S of the gradients, where it solves the affine
    problem min wᵀM_S w s.t. Σw = 1 (a bordered linear system, solvable however singular M_S
    is); of the candidates with w ≥ 0 the one of least norm is the optimum. 2^K − 1 systems
    of size ≤ K + 1, negligible beside the Gram matrix at the K of multi-task learning; the
    work doubles with every task, so far beyond K = 10 the frank_wolfe option is the practical one."""
    num_tasks = len(gram)
    best, best_value = None, None
    for size in range(1, num_tasks + 1):
        for subset in itertools.combinations(range(num_tasks), size):
            index = list(subset)
            bordered = torch.zeros(size + 1, size + 1, dtype=gram.dtype)
            bordered[:size, :size] = gram[index][:, index]
            bordered[:size, size] = bordered[size, :size] = 1.0
            rhs = torch.zeros(size + 1, dtype=gram.dtype)
            rhs[size] = 1.0
            solution = torch.linalg.lstsq(bordered, rhs[:, None], driver="gelsd").solution[:size, 0]
            if solution.min() < 0 or abs(float(solution.sum()) - 1.0) > 1e-9:
                continue
            weights = torch.zeros(num_tasks, dtype=gram.dtype)
            weights[index] = solution
            value = float(weights @ gram @ weights)
            if best is None or value < best_value:
                best, best_value = weights, value
    return best


class MGDA(TorchJDGramWeighting):
    """The min-norm point of the convex hull of the task gradients (weights on the simplex), as
    the authors' code computes it by default: each gradient divided by L_k‖g_k‖ first
    (normalization 'loss+', their sample configuration), then their MinNormSolver
    ('published'), the weights applied to the undivided gradients. 'exact' solves the QP
    exactly; 'frank_wolfe' is torchjd's MGDAWeighting."""

    default_head_grads = "weighted"  # the published CityScapes code backpropagates Σ α_k L_k
    name = "mgda"
    fidelity = "as the authors' code (MinNormSolver, 'loss+' normalisation, α sums to 1); Nash-MTL's: sum K, 'none'"
    paper = "Sener, Koltun 2018, Multi-Task Learning as Multi-Objective Optimization (NeurIPS)"
    cost = "Gram matrix O(K²P) + a K×K min-norm solve"
    OPTIONS = {
        "solver": Option(str, "published", "'published' (the authors' MinNormSolver, its [0.001, 0.999] clamp "
                         "included), 'exact' (active sets: the exact QP) or 'frank_wolfe' (torchjd's)",
                         ("published", "exact", "frank_wolfe"), legacy="frank_wolfe"),
        "epsilon": Option(float, 0.001, "frank_wolfe: stop when its step γ falls below epsilon"),
        "max_iters": Option(int, 100, "frank_wolfe: maximum iterations"),
        "convention": Option(str, "ours", "weights summing to 1 ('ours', as the authors' code) or to K "
                             "('published': the Nash-MTL/FAMO CityScapes code's loss Σ K·α_k L_k)", ("ours", "published"),
                             legacy="ours"),
        "normalization": Option(str, "loss+", "each gradient is divided, for the solve only, by L_k‖g_k‖ ('loss+', "
                                "the authors' sample configuration), ‖g_k‖ ('l2'), L_k ('loss') or 1 ('none': "
                                "Nash-MTL's and LibMTL's default)", NORMALIZATIONS, legacy="none"),
    }

    def weights(self, ctx):
        gram = gram64(ctx)
        scales = gradient_scales(gram, ctx.losses, self.normalization)
        with torch.no_grad():
            return (self.torchjd_weighting(gram / torch.outer(scales, scales)) * self.scale()).to(ctx.gram)

    def build(self):
        if self.solver == "published":
            return published_min_norm_weights
        if self.solver == "exact":
            return min_norm_weights
        from torchjd.aggregation import MGDAWeighting  # lazy: see torchjd_gram.py
        return MGDAWeighting(epsilon=self.epsilon, max_iters=self.max_iters)

    def scale(self):
        return float(self.num_tasks) if self.convention == "published" else 1.0
