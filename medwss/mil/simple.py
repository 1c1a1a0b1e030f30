"""Pooling baselines: ``mean`` (mean of embeddings) and ``max`` (max of instance probabilities).

Both share an instance MLP ``Linear(C, hidden) → ReLU → Dropout`` and a linear classifier
``Linear(hidden, K)``:

- ``mean``: the case embedding is the mean of the instance embeddings, classified and passed through
  a sigmoid. The classifier being linear, the case logit equals the mean of the instance logits,
  so the instance scores ``σ(classifier(h_i))`` come from the very head that makes the case
  prediction.
- ``max``: the case probability is the maximum of the instance probabilities ``σ(classifier(h_i))``,
  which are also the scores (classic instance-level max-pooling MIL).
"""

from __future__ import annotations

import torch
from torch import nn

from medwss.mil.base import Aggregator, Bag, MILOutput, register_aggregator
from medwss.mil.grid import dense_scores
from medwss.mil.pooling import MaxPool, MeanPool


class _InstanceClassifier(Aggregator):
    """Instance MLP and linear classifier shared by the pooling baselines.

    Args:
        in_dim: Channels of the instance embeddings.
        n_classes: K.
        hidden: Width of the instance MLP.
        dropout: Dropout after the MLP.
    """

    def __init__(self, in_dim: int, n_classes: int = 1, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_classes)
        self.hidden, self.dropout = hidden, dropout
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, n_classes)


@register_aggregator("mean")
class MeanMIL(_InstanceClassifier):
    """Mean pooling of instance embeddings (see the module docstring)."""

    name = "mean"

    def __init__(self, in_dim: int, n_classes: int = 1, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_classes, hidden, dropout)
        self.pool = MeanPool()

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Case probability from the mean embedding; `label` unused."""
        h = self.mlp(bag.features.float())  # (N, hidden)
        probs = torch.sigmoid(self.classifier(self.pool(h)))  # (K,)
        scores = torch.sigmoid(self.classifier(h))  # (N, K)
        return MILOutput(probs=probs, scores=scores, dense=dense_scores(scores, bag.grid_index, bag.grid_shape))


@register_aggregator("max")
class MaxMIL(_InstanceClassifier):
    """Max pooling of instance probabilities (see the module docstring)."""

    name = "max"

    def __init__(self, in_dim: int, n_classes: int = 1, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__(in_dim, n_classes, hidden, dropout)
        self.pool = MaxPool()

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Case probability as the highest instance probability; `label` unused."""
        h = self.mlp(bag.features.float())  # (N, hidden)
        scores = torch.sigmoid(self.classifier(h))  # (N, K)
        return MILOutput(
            self.pool(scores), scores, dense=dense_scores(scores, bag.grid_index, bag.grid_shape)
        )  # (K,), (N, K)
