"""IMTL-G through torchjd's IMTLGWeighting (docs/methods.md, "IMTL-G")."""
from .torchjd_gram import TorchJDGramWeighting


class IMTLG(TorchJDGramWeighting):
    """Weights (summing to 1) giving the aggregate equal projections on all unit task
    gradients (torchjd's pseudo-inverse form also handles dependent gradients)."""

    default_head_grads = "weighted"  # the published CityScapes code backpropagates Σ α_k L_k
    name = "imtl"
    fidelity = "matches IMTL-G (LibMTL's IMTL is the L+G hybrid: `imtl_l`)"
    paper = "Liu et al. 2021, Towards Impartial Multi-task Learning (ICLR)"
    cost = "Gram matrix O(K²P) + a K×K pseudo-inverse"

    def build(self):
        from torchjd.aggregation import IMTLGWeighting  # lazy: see torchjd_gram.py
        return IMTLGWeighting()
