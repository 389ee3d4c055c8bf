"""Aligned-MTL with the official code's rank cut-off (docs/methods.md, "Aligned-MTL")."""
import torch

from .base import Option
from .torchjd_gram import TorchJDGramWeighting

FLOAT32_EPS = torch.finfo(torch.float32).eps
FLOAT64_EPS = torch.finfo(torch.float64).eps  # torchjd's cut-off, which version 3 used


def aligned_weights(gram, scale_mode="min", rank_eps=FLOAT32_EPS):
    """w = B·(1/K) with the balance transformation B = √σ V Λ^{-1/2} Vᵀ over the eigenpairs
    (Λ, V) of M that are kept: eigenvalues above rank_eps·K·λ_max. σ is the smallest kept
    eigenvalue ('min'), their median or their mean ('rmse').

    The official code computes M in float32 and cuts at float32's epsilon, so for gradients
    within about 1e-7 of collinear it drops the tiny direction. torchjd cuts at the epsilon of
    M's dtype; with our float64 M it would keep that direction and, scaling by its tiny
    eigenvalue, shrink the whole update by √(λ_min/λ_max). The cut-off is an option here,
    float32's epsilon by default, as the official code."""
    eigenvalues, vectors = torch.linalg.eigh(gram)
    keep = eigenvalues > eigenvalues.max() * len(gram) * rank_eps
    if not keep.any():  # no gradient at all: any weights give the zero update
        return torch.full((len(gram),), 1 / len(gram), dtype=gram.dtype)
    eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
    sigma = {"min": eigenvalues.min(), "median": eigenvalues.median(), "rmse": eigenvalues.mean()}[scale_mode]
    balance = sigma.sqrt() * vectors @ torch.diag(eigenvalues.rsqrt()) @ vectors.T
    return balance @ torch.full((len(gram),), 1 / len(gram), dtype=gram.dtype)


class AlignedMTL(TorchJDGramWeighting):
    """Aligns the task gradients' principal components (equal singular values, scaled as
    `scale_mode` says) and sums them, as the authors' code (convention 'ours' averages them, as
    torchjd); our own few lines rather than torchjd's
    AlignedMTLWeighting, whose rank cut-off follows M's dtype (see aligned_weights)."""

    name = "aligned_mtl"
    fidelity = "as the authors' code (rank cut-off, aligned gradients summed); torchjd's mean: `--aligned-mtl-convention ours`"
    paper = "Senushkin et al. 2023, Independent Component Alignment for Multi-Task Learning (CVPR)"
    cost = "Gram matrix O(K²P) + a K×K eigendecomposition"
    OPTIONS = {
        "scale_mode": Option(str, "min", "scale of the aligned components, from M's eigenvalues: 'min' "
                             "(the smallest; torchjd's default), 'median', or 'rmse' (the mean)", ("min", "median", "rmse")),
        "rank_eps": Option(float, FLOAT32_EPS, "eigenvalues below rank_eps·K·λ_max are dropped (default: float32's "
                           "epsilon, as the official code)", legacy=FLOAT64_EPS),
        "convention": Option(str, "published", "sum the aligned gradients ('published', the authors' code) or "
                             "average them ('ours', torchjd's: published / K)", ("ours", "published"), legacy="ours"),
    }

    def build(self):
        return lambda gram: aligned_weights(gram, self.scale_mode, self.rank_eps)

    def scale(self):
        return float(self.num_tasks) if self.convention == "published" else 1.0
