"""IMTL-G through torchjd's IMTLGWeighting (docs/methods.md, "IMTL-G")."""
from .torchjd_gram import TorchJDGramWeighting


class IMTLG(TorchJDGramWeighting):
    """Weights (summing to 1) giving the aggregate equal projections on all unit task
    gradients (torchjd's pseudo-inverse form also handles dependent gradients)."""

    # The reference is torchjd (no authors' code; LibMTL's IMTL is the L+G hybrid, `imtl_l`):
    # its mtl_backward gives each head its own ∇L_k. Nash-MTL's IMTLG code backpropagates
    # Σ α_k L_k: --head-grads weighted.
    name = "imtl"
    fidelity = "matches torchjd's IMTLG (heads own ∇L_k; LibMTL's IMTL is the L+G hybrid: `imtl_l`)"
    paper = "Liu et al. 2021, Towards Impartial Multi-task Learning (ICLR)"
    cost = "Gram matrix O(K²P) + a K×K pseudo-inverse"

    def build(self):
        from torchjd.aggregation import IMTLGWeighting  # lazy: see torchjd_gram.py
        return IMTLGWeighting()
