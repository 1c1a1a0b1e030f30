"""TransMIL (Shao et al., NeurIPS 2021): correlated MIL with a transformer and PPEG position encoding.

Instances are projected (``Linear(C, hidden) → ReLU``), the sequence is padded to a square number
of tokens by repeating its first instances, a class token is prepended, and two transformer
layers (pre-norm attention with a residual, as in the paper) run with the PPEG module between
them: depthwise 7×7, 5×5 and 3×3 convolutions over the tokens arranged on the square, added to
the tokens. The case probabilities come from the normalised class token; the instance scores are
the class token's attention to the instances in the last layer (mean over heads), min-max
normalised to [0, 1] per case (the same in every class column).

Attention: ``"nystrom"`` (the paper's Nyström approximation, `NystromAttention`, linear in the
bag size) or ``"exact"`` (`ExactAttention`, softmax attention through PyTorch's fused
``scaled_dot_product_attention``; exact, quadratic time but linear memory).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medwss.errors import ConfigError
from medwss.mil.abmil import minmax_normalise
from medwss.mil.base import Aggregator, Bag, MILOutput, register_aggregator
from medwss.mil.grid import dense_scores


class ExactAttention(nn.Module):
    """Multi-head softmax self-attention that also returns the first token's attention row."""

    def __init__(self, dim: int, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, dim) → output (1, L, dim) and the first token's attention (L,)."""
        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, L, d) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, L, d)
        row = torch.softmax(q[:, :, :1] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, h, 1, L)
        return self.out(y.transpose(1, 2).reshape(b, n, dim)), row[0, :, 0].mean(0)


def _pinv(x: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """Iterative Moore–Penrose pseudo-inverse of softmax matrices (Nyströmformer): (..., m, m)."""
    absx = x.abs()
    z = x.transpose(-1, -2) / (absx.sum(-1).max() * absx.sum(-2).max())
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class NystromAttention(nn.Module):
    """Nyström self-attention (Xiong et al. 2021) with landmarks and a depthwise residual on the values.

    Args:
        dim: Token width.
        heads: Attention heads.
        landmarks: Landmarks (segment means of queries and keys).
        pinv_iterations: Iterations of the pseudo-inverse.
        residual_kernel: Length of the depthwise convolution on the values (0: none).
    """

    def __init__(
        self, dim: int, heads: int = 8, landmarks: int = 64, pinv_iterations: int = 6, residual_kernel: int = 33
    ) -> None:
        super().__init__()
        self.heads, self.landmarks, self.pinv_iterations = heads, landmarks, pinv_iterations
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.res = (
            nn.Conv2d(heads, heads, (residual_kernel, 1), padding=(residual_kernel // 2, 0), groups=heads, bias=False)
            if residual_kernel
            else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, dim) → output (1, L, dim) and the first token's approximate attention (L,)."""
        b, n, dim = x.shape
        m = self.landmarks
        pad = (m - n % m) % m
        x = F.pad(x, (0, 0, pad, 0))  # (B, L', dim), zeros in front
        length = x.shape[1]
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, L', d)
        q = q / math.sqrt(q.shape[-1])
        seg = length // m
        q_l = q.reshape(b, self.heads, m, seg, -1).mean(3)  # (B, h, m, d)
        k_l = k.reshape(b, self.heads, m, seg, -1).mean(3)  # (B, h, m, d)
        a1 = torch.softmax(q @ k_l.transpose(-1, -2), dim=-1)  # (B, h, L', m)
        a2_inv = _pinv(torch.softmax(q_l @ k_l.transpose(-1, -2), dim=-1), self.pinv_iterations)  # (B, h, m, m)
        a3 = torch.softmax(q_l @ k.transpose(-1, -2), dim=-1)  # (B, h, m, L')
        y = (a1 @ a2_inv) @ (a3 @ v)  # (B, h, L', d)
        if self.res is not None:
            y = y + self.res(v)
        y = self.out(y.transpose(1, 2).reshape(b, length, dim))[:, pad:]  # (B, L, dim)
        row = ((a1[:, :, pad : pad + 1] @ a2_inv) @ a3)[0, :, 0, pad:].mean(0)  # (L,)
        return y, row


ATTENTIONS: dict[str, type[ExactAttention] | type[NystromAttention]] = {
    "exact": ExactAttention,
    "nystrom": NystromAttention,
}


class TransLayer(nn.Module):
    """``x + attention(LayerNorm(x))``; returns the first token's attention row too."""

    def __init__(self, dim: int, heads: int, attention: str, landmarks: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = ExactAttention(dim, heads) if attention == "exact" else NystromAttention(dim, heads, landmarks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, dim) → (1, L, dim), (L,)."""
        y, row = self.attn(self.norm(x))
        return x + y, row


class PPEG(nn.Module):
    """Pyramid position encoding generator: depthwise 7×7 + 5×5 + 3×3 convolutions plus identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        """(1, 1 + side², dim) with the class token first → same shape."""
        cls, tokens = x[:, :1], x[:, 1:]
        f = tokens.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)  # (B, dim, side, side)
        f = f + sum(conv(f) for conv in self.convs)  # (B, dim, side, side)
        return torch.cat([cls, f.flatten(2).transpose(1, 2)], dim=1)  # (B, 1 + side², dim)


@register_aggregator("transmil")
class TransMIL(Aggregator):
    """TransMIL (see the module docstring).

    Args:
        in_dim: Channels of the instance embeddings.
        n_classes: K.
        hidden: Token width.
        heads: Attention heads (must divide `hidden`).
        attention: ``"nystrom"`` or ``"exact"``.
        landmarks: Nyström landmarks (None: hidden // 2, as in the paper).
        dropout: Dropout after the projection.
    """

    name = "transmil"

    def __init__(
        self,
        in_dim: int,
        n_classes: int = 1,
        hidden: int = 128,
        heads: int = 8,
        attention: str = "nystrom",
        landmarks: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dim, n_classes)
        if attention not in ATTENTIONS:
            raise ConfigError(f"TransMIL attention must be one of {sorted(ATTENTIONS)}, got {attention!r}")
        if hidden % heads:
            raise ConfigError(f"TransMIL heads ({heads}) must divide hidden ({hidden})")
        self.hidden, self.heads, self.attention, self.landmarks, self.dropout = (
            hidden,
            heads,
            attention,
            landmarks,
            dropout,
        )
        n_land = landmarks or hidden // 2
        self.fc = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.layer1 = TransLayer(hidden, heads, attention, n_land)
        self.ppeg = PPEG(hidden)
        self.layer2 = TransLayer(hidden, heads, attention, n_land)
        self.norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Case probabilities from the class token and its last-layer attention; `label` unused."""
        n = len(bag)
        h = self.fc(bag.features.float())  # (N, hidden)
        side = math.ceil(math.sqrt(n))
        extra = torch.arange(side * side - n, device=h.device) % n
        h = torch.cat([h, h[extra]])  # (side², hidden)
        x = torch.cat([self.cls_token, h[None]], dim=1)  # (1, 1 + side², hidden)
        x, _ = self.layer1(x)  # (1, 1 + side², hidden)
        x = self.ppeg(x, side)  # (1, 1 + side², hidden)
        x, row = self.layer2(x)  # (1, 1 + side², hidden), (1 + side²,)
        probs = torch.sigmoid(self.classifier(self.norm(x)[0, 0]))  # (K,)
        scores = minmax_normalise(row[1 : n + 1].float())[:, None].repeat(1, self.n_classes)  # (N, K)
        return MILOutput(probs=probs, scores=scores, dense=dense_scores(scores, bag.grid_index, bag.grid_shape))
