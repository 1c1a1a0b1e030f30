"""CLAM-SB (Lu et al., Nature Biomedical Engineering 2021): gated attention plus instance clustering.

The bag branch is ABMIL's gated attention with a linear classifier. The instance branch gives
each class c an instance classifier ``Linear(hidden, 2)``; for a bag of class c, the k most attended
instances are pseudo-labelled 1 and the k least attended 0 for classifier c ("in-class"); with
``subtyping`` (mutually exclusive classes) the k most attended are also pseudo-labelled 0 for
every other class ("out-of-class"). The instance loss (cross-entropy or the smooth top-1 SVM of
Berrada et al. 2018, as in CLAM) times ``inst_weight`` is ``aux_loss``, computed when a label is
given and the module is training.

A binary task (K = 1) keeps CLAM's two classes (negative, positive) for the instance branch, so a
negative bag trains the negative-class instance classifier and a positive bag the positive one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medwss.errors import ConfigError
from medwss.mil.abmil import GatedAttention, minmax_normalise
from medwss.mil.base import Aggregator, Bag, MILOutput, register_aggregator
from medwss.mil.grid import dense_scores


def smooth_svm_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, tau: float = 1.0) -> torch.Tensor:
    """Smooth top-1 multiclass SVM: mean of ``τ·logsumexp((s + α·[j ≠ y]) / τ) − s_y``.

    Args:
        logits: (M, J) scores.
        target: (M,) class indices.
    """
    margin = alpha * (1 - F.one_hot(target, logits.shape[1]).to(logits.dtype))  # (M, J)
    lse = tau * torch.logsumexp((logits + margin) / tau, dim=1)  # (M,)
    return (lse - logits.gather(1, target[:, None]).squeeze(1)).mean()


@register_aggregator("clam_sb")
class CLAMSB(Aggregator):
    """CLAM single-branch.

    Args:
        in_dim: Channels of the instance embeddings.
        n_classes: K.
        hidden: Width of the instance MLP.
        attn_dim: Width of the attention branches.
        dropout: Dropout after the MLP and in the attention branches.
        k_sample: Instances taken from each end of the attention ranking (fewer in small bags).
        inst_weight: Weight of the instance loss in ``aux_loss`` (CLAM's 1 − bag_weight).
        inst_loss: ``"ce"`` or ``"svm"`` (smooth top-1 SVM).
        subtyping: Out-of-class pseudo-labels too; None: True when K > 1 (mutually exclusive classes).
    """

    name = "clam_sb"

    def __init__(
        self,
        in_dim: int,
        n_classes: int = 1,
        hidden: int = 128,
        attn_dim: int = 64,
        dropout: float = 0.1,
        k_sample: int = 8,
        inst_weight: float = 0.3,
        inst_loss: str = "ce",
        subtyping: bool | None = None,
    ) -> None:
        super().__init__(in_dim, n_classes)
        if inst_loss not in ("ce", "svm"):
            raise ConfigError(f"CLAM inst_loss must be 'ce' or 'svm', got {inst_loss!r}")
        self.hidden, self.attn_dim, self.dropout, self.k_sample = hidden, attn_dim, dropout, k_sample
        self.inst_weight, self.inst_loss, self.subtyping = inst_weight, inst_loss, subtyping
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden, attn_dim, dropout)
        self.classifier = nn.Linear(hidden, n_classes)
        n_inst = 2 if n_classes == 1 else n_classes
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(n_inst))

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:
        """Case probabilities, normalised attention and, when training with `label`, the instance loss.

        Args:
            bag: The case.
            label: (K,) binary or one-hot target (a class index is accepted too), or None.
        """
        h = self.mlp(bag.features.float())  # (N, hidden)
        logits_a = self.attention(h).float()  # (N,)
        a = torch.softmax(logits_a, dim=0)  # (N,)
        probs = torch.sigmoid(self.classifier(a @ h.float()))  # (K,)
        scores = minmax_normalise(a)[:, None].repeat(1, self.n_classes)  # (N, K)
        aux = None
        if label is not None and self.training and self.inst_weight > 0:
            aux = self.inst_weight * self._instance_loss(h.float(), logits_a, self._in_class(label))
        dense = dense_scores(scores, bag.grid_index, bag.grid_shape)
        return MILOutput(probs=probs, scores=scores, aux_loss=aux, dense=dense)

    def _in_class(self, label: torch.Tensor) -> list[bool]:
        """Which instance classifiers the bag is in-class for."""
        y = label.detach().flatten().float().cpu()
        if self.n_classes == 1:
            pos = bool(y[0] > 0.5)
            return [not pos, pos]
        if y.numel() == 1:  # a class index
            return [c == int(y[0]) for c in range(self.n_classes)]
        return [bool(v > 0.5) for v in y]

    def _instance_loss(self, h: torch.Tensor, logits_a: torch.Tensor, in_class: list[bool]) -> torch.Tensor:
        """Mean instance loss over the evaluated classes; (N, hidden), (N,) → scalar."""
        k = min(self.k_sample, h.shape[0] // 2)
        if k < 1:
            return h.new_zeros(())
        top = torch.topk(logits_a, k).indices  # (k,)
        bottom = torch.topk(-logits_a, k).indices  # (k,)
        ones = torch.ones(k, dtype=torch.long, device=h.device)
        subtyping = self.n_classes > 1 if self.subtyping is None else self.subtyping
        loss_fn = F.cross_entropy if self.inst_loss == "ce" else smooth_svm_loss
        losses = []
        for clf, inside in zip(self.instance_classifiers, in_class, strict=True):
            if inside:
                x, y = torch.cat([h[top], h[bottom]]), torch.cat([ones, 0 * ones])  # (2k, hidden), (2k,)
            elif subtyping:
                x, y = h[top], 0 * ones  # (k, hidden), (k,)
            else:
                continue
            losses.append(loss_fn(clf(x), y))
        return torch.stack(losses).mean() if losses else h.new_zeros(())
