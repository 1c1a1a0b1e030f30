"""ABMIL (Ilse, Tomczak, Welling, ICML 2018): gated-attention pooling.

``a = softmax_i(w^T (tanh(V h_i) ⊙ σ(U h_i)))``, case embedding ``z = Σ a_i h_i``, case
probabilities ``σ(classifier(z))``. One attention branch is shared by all K classes (as in the
paper and CLAM-SB), so the instance scores, the attention min-max normalised to [0, 1] per case,
are the same in every class column.
"""

from __future__ import annotations

import torch
from torch import nn

from medwss.mil.base import Aggregator, Bag, MILOutput, register_aggregator
from medwss.mil.grid import dense_scores


class GatedAttention(nn.Module):
    """Gated attention scores (Ilse et al. 2018).

    Args:
        dim: Channels of the instance embeddings.
        attn_dim: Width of the V and U branches.
        dropout: Dropout on both branches.
    """

    def __init__(self, dim: int, attn_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.V = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh(), nn.Dropout(dropout))
        self.U = nn.Sequential(nn.Linear(dim, attn_dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(attn_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Attention logits: (N, dim) → (N,)."""
        return self.w(self.V(h) * self.U(h)).squeeze(-1)  # (N,)


def minmax_normalise(a: torch.Tensor) -> torch.Tensor:
    """Scale (N,) values to [0, 1] within the case; a constant vector (one instance) maps to ones."""
    lo, hi = a.min(), a.max()
    if float((hi - lo).detach()) < 1e-12:
        return torch.ones_like(a)
    return (a - lo) / (hi - lo)  # (N,)


@register_aggregator("abmil")
class ABMIL(Aggregator):
    """Gated-attention MIL.

    Args:
        in_dim: Channels of the instance embeddings.
        n_classes: K.
        hidden: Width of the instance MLP ``Linear(C, hidden) → ReLU → Dropout``.
        attn_dim: Width of the attention branches.
        dropout: Dropout after the MLP and in the attention branches.
    """

    name = "abmil"

    def __init__(
        self, in_dim: int, n_classes: int = 1, hidden: int = 128, attn_dim: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__(in_dim, n_classes)
        self.hidden, self.attn_dim, self.dropout = hidden, attn_dim, dropout
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden, attn_dim, dropout)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Case probabilities and normalised attention; `label` unused."""
        h = self.mlp(bag.features.float())  # (N, hidden)
        a = torch.softmax(self.attention(h).float(), dim=0)  # (N,)
        z = a @ h.float()  # (hidden,)
        probs = torch.sigmoid(self.classifier(z))  # (K,)
        scores = minmax_normalise(a)[:, None].repeat(1, self.n_classes)  # (N, K)
        return MILOutput(probs=probs, scores=scores, dense=dense_scores(scores, bag.grid_index, bag.grid_shape))
