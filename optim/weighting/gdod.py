"""GDOD: gradient decomposition on an orthogonal basis (docs/methods.md, "GDOD").

No public code exists; the open choices are options: the eigenvalue cut-off `tol`, what
counts as a zero coefficient (`zero_tol`) and how zeros vote (`zeros`). The
decomposition is over the whole network only (see the `decomposition` option).
When two eigenvalues of M coincide (e.g. orthogonal gradients of equal norm) the
eigenbasis is not unique and neither is GDOD's shared/conflict split; eigh picks one.
"""
from typing import NamedTuple

import torch

from .base import Option, WeightingMethod, gram64


def gdod_eigen(gram, tol):
    """M = V Λ Vᵀ, keeping the directions with λ_j > tol·λ_max (span(G)'s basis)."""
    eigenvalues, vectors = torch.linalg.eigh(gram)
    keep = eigenvalues > tol * eigenvalues.max()  # also drops everything when M = 0
    return eigenvalues[keep], vectors[:, keep]


def shared_directions(vectors, zero_tol, zeros):
    """Direction j is task-shared when its coefficients c_ij = √λ_j V_ij (same signs as
    V_ij) all agree in sign. |V_ij| ≤ zero_tol counts as zero (V's columns are unit
    vectors, so the threshold is scale-free); zeros="shared": a zero agrees with either
    sign; zeros="conflict": a zero makes the direction task-conflict."""
    positive, negative = vectors > zero_tol, vectors < -zero_tol
    if zeros == "shared":
        return ~(positive.any(0) & negative.any(0))
    return positive.all(0) | negative.all(0)


def gdod_mixing(gram, tol=1e-6, zero_tol=1e-6, zeros="shared"):
    """A = V_S V_Sᵀ: row i is task i's component on the shared directions,
    Σ_{j∈S} c_ij u_j = Σ_{j∈S} V_ij v_jᵀ G. The update's task weights are α = Aᵀ1 = V_S V_Sᵀ 1."""
    _, vectors = gdod_eigen(gram, tol)
    kept = vectors[:, shared_directions(vectors, zero_tol, zeros)]
    return kept @ kept.T


class Decomposition(NamedTuple):
    basis: torch.Tensor         # (r, P): rows u_j = Gᵀ v_j / √λ_j, orthonormal, spanning span(G)
    coefficients: torch.Tensor  # (K, r): c_ij = √λ_j V_ij, so G = c · basis
    shared: torch.Tensor        # (r,) bool: task-shared directions
    eigenvalues: torch.Tensor   # (r,)

    def update(self):
        """Σ_{j shared} (Σ_i c_ij) u_j."""
        return self.coefficients[:, self.shared].sum(0) @ self.basis[self.shared]


def gdod_decompose(grads, tol=1e-6, zero_tol=1e-6, zeros="shared"):
    """The explicit decomposition of a (K, P) gradient matrix G (for tests and analysis;
    the method itself needs only M = G Gᵀ)."""
    eigenvalues, vectors = gdod_eigen(grads @ grads.T, tol)
    roots = eigenvalues.sqrt()
    return Decomposition(basis=(vectors.T @ grads) / roots[:, None], coefficients=vectors * roots,
                         shared=shared_directions(vectors, zero_tol, zeros), eigenvalues=eigenvalues)


class GDOD(WeightingMethod):
    """Each task keeps its components on the task-shared directions of span(G) and drops
    those on the task-conflict ones. Per step: the Gram matrix; one K×K eigendecomposition."""

    name = "gdod"
    fidelity = "no public code: our reading, options for the open choices"
    paper = "Dong et al. 2022, GDOD: Effective Gradient Descent using Orthogonal Decomposition for Multi-Task Learning (CIKM)"
    needs = "gradients (Gram matrix)"
    cost = "Gram matrix O(K²P) + O(K³)"
    needs_grads = True
    OPTIONS = {
        "tol": Option(float, 1e-6, "keep eigen-directions with λ > tol·λ_max (below: float noise of M)"),
        "zero_tol": Option(float, 1e-6, "an eigenvector entry |V_ij| ≤ zero_tol counts as a zero coefficient"),
        "zeros": Option(str, "shared", "how a zero coefficient votes: 'shared' (agrees with any sign) or "
                        "'conflict'", ("shared", "conflict")),
        "decomposition": Option(str, "network", "'network': one decomposition of all shared parameters; a per-layer "
                                "one is not offered, as the step contract carries one K×K matrix", ("network",)),
    }

    def mix(self, ctx):
        return gdod_mixing(gram64(ctx), self.tol, self.zero_tol, self.zeros).to(ctx.gram)
