"""Aligned-MTL through torchjd's AlignedMTLWeighting (docs/methods.md, "Aligned-MTL")."""
from .base import Option
from .torchjd_gram import TorchJDGramWeighting


class AlignedMTL(TorchJDGramWeighting):
    """Aligns the task gradients' principal components (equal singular values, scaled as
    `scale_mode` says) and sums them: weights B·(1/K) with B from M's eigenbasis."""

    name = "aligned_mtl"
    paper = "Senushkin et al. 2023, Independent Component Alignment for Multi-Task Learning (CVPR)"
    cost = "Gram matrix O(K²P) + a K×K eigendecomposition"
    OPTIONS = {
        "scale_mode": Option(str, "min", "scale of the aligned components, from M's eigenvalues: 'min' "
                             "(the smallest; torchjd's default), 'median', or 'rmse' (the mean)", ("min", "median", "rmse")),
    }

    def build(self):
        from torchjd.aggregation import AlignedMTLWeighting  # lazy: see torchjd_gram.py
        return AlignedMTLWeighting(scale_mode=self.scale_mode)
