"""MGDA: the min-norm point of the task gradients' convex hull (docs/methods.md, "MGDA")."""
import itertools

import torch

from .base import Option
from .torchjd_gram import TorchJDGramWeighting


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
    """The min-norm point of the convex hull of the task gradients (weights on the simplex):
    solved exactly by default; 'frank_wolfe' is torchjd's MGDAWeighting, the iterative solver
    of the published code, inexact at about 1e-3 relative for K ≥ 3 at its usual tolerance."""

    default_head_grads = "weighted"  # the published CityScapes code backpropagates Σ α_k L_k
    name = "mgda"
    fidelity = "exact QP (published: Frank-Wolfe, `--mgda-solver`); α sums to 1 (published K: `--mgda-convention`)"
    paper = "Sener, Koltun 2018, Multi-Task Learning as Multi-Objective Optimization (NeurIPS)"
    cost = "Gram matrix O(K²P) + an exact K×K QP (2^K small solves)"
    OPTIONS = {
        "solver": Option(str, "exact", "'exact' (active sets) or 'frank_wolfe' (torchjd's, as the published code)",
                         ("exact", "frank_wolfe"), legacy="frank_wolfe"),
        "epsilon": Option(float, 0.001, "frank_wolfe: stop when its step γ falls below epsilon"),
        "max_iters": Option(int, 100, "frank_wolfe: maximum iterations"),
        "convention": Option(str, "ours", "weights summing to 1 ('ours') or to K ('published', as the official "
                             "CityScapes code's loss Σ K·α_k L_k)", ("ours", "published"), legacy="ours"),
    }

    def build(self):
        if self.solver == "exact":
            return min_norm_weights
        from torchjd.aggregation import MGDAWeighting  # lazy: see torchjd_gram.py
        return MGDAWeighting(epsilon=self.epsilon, max_iters=self.max_iters)

    def scale(self):
        return float(self.num_tasks) if self.convention == "published" else 1.0
