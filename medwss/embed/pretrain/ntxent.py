"""NT-Xent (SimCLR) and its supervised-contrastive generalisation with pluggable positives.

Embeddings come as ``2B`` rows: the first view of the ``B`` tiles, then their second view. A
positives mask ``(2B, 2B)`` says which pairs attract; every other row is a negative. With
`instance_positives` (only the two views of a tile) the loss is SimCLR's NT-Xent; with
`group_positives` (every view whose group is equal: same volume, same patient) it is SupCon's
``L_out`` as used for the contrastive-metric coreset (Vepa et al., NeurIPS 2024).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

PositivesFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps the group ids of a batch, ``(B,)`` long, to its ``(2B, 2B)`` bool positives mask."""


def nt_xent(z: torch.Tensor, positives_mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Contrastive loss over ``2B`` embeddings.

    For each anchor ``i`` with at least one positive, the loss is the mean over its positives
    ``p`` of ``-log(exp(s_ip / t) / Σ_{k≠i} exp(s_ik / t))`` with cosine similarities ``s``;
    anchors are averaged.

    Args:
        z: ``(2B, D)`` embeddings (normalised here).
        positives_mask: ``(2B, 2B)`` bool; the diagonal is ignored.
        temperature: Softmax temperature ``t``.

    Returns:
        Scalar loss.
    """
    n = z.shape[0]
    if positives_mask.shape != (n, n):
        raise ValueError(f"positives_mask must be ({n}, {n}), got {tuple(positives_mask.shape)}")
    z = F.normalize(z.float(), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (2B, 2B)
    pos = positives_mask.to(z.device).bool() & ~self_mask
    n_pos = pos.sum(1)  # (2B,)
    has = n_pos > 0
    if not bool(has.any()):
        raise ValueError("no anchor has a positive")
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]  # (A,)
    return per_anchor.mean()


def instance_positives(batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``(2B, 2B)`` mask pairing view ``i`` with view ``i + B`` (SimCLR)."""
    idx = torch.arange(2 * batch_size, device=device)
    return (idx[:, None] - idx[None, :]).abs() == batch_size


def group_positives(groups: torch.Tensor) -> torch.Tensor:
    """The ``(2B, 2B)`` mask of views whose group id is equal (the two views of a tile included).

    Args:
        groups: ``(B,)`` group ids (volume, patient, or any grouping; -1 is an ordinary id).
    """
    ids = torch.cat([groups, groups]).reshape(-1)  # (2B,)
    mask = ids[:, None] == ids[None, :]
    return mask & ~torch.eye(len(ids), dtype=torch.bool, device=ids.device)


def _instance_from_groups(groups: torch.Tensor) -> torch.Tensor:
    return instance_positives(len(groups), device=groups.device)


POSITIVES: dict[str, PositivesFn] = {"instance": _instance_from_groups, "group": group_positives}
"""Named positives rules; each takes the batch's group ids and returns the positives mask."""


def get_positives(name: str | PositivesFn) -> PositivesFn:
    """A positives rule by name (``instance`` or ``group``), or the callable itself."""
    if callable(name):
        return name
    if name not in POSITIVES:
        raise ValueError(f"unknown positives '{name}': choose one of {', '.join(POSITIVES)}")
    return POSITIVES[name]


def _relation(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A group's ``(B, B)`` relation: equal ids for ``(B,)`` ids, the tensor itself for a ``(B, B)`` bool mask."""
    if ids.ndim == 1:
        if len(ids) != batch_size:
            raise ValueError(f"group ids have {len(ids)} entries for a batch of {batch_size}")
        return ids[:, None] == ids[None, :]
    if ids.shape != (batch_size, batch_size):
        raise ValueError(f"a group relation must be ({batch_size}, {batch_size}), got {tuple(ids.shape)}")
    return ids.bool()


def weighted_group_nt_xent(
    z: torch.Tensor,
    group_ids: dict[str, torch.Tensor],
    weights: dict[str, float] | None = None,
    temperature: float = 0.5,
    exclude_groups_from_negatives: bool = True,
) -> torch.Tensor:
    """NT-Xent with several kinds of positives, each with its own weight (Vepa et al., NeurIPS 2024).

    The loss is ``w_instance · L_instance + Σ_g w_g · L_g``. ``L_instance`` pairs the two views of a
    tile; ``L_g`` pairs views whose tiles are related by group ``g`` (same volume, same patient,
    adjacent slices), the two views of one tile left out. Each ``L`` is the mean over anchors with at
    least one such positive of the mean over those positives ``p`` of
    ``-log(exp(s_ip/t) / (exp(s_ip/t) + Σ_n exp(s_in/t)))``. With `exclude_groups_from_negatives`,
    the negatives ``n`` of an anchor are the views related to it by no group (nor the instance
    pair); otherwise every view but ``i`` and ``p``. With no groups this is `nt_xent` with
    `instance_positives`.

    Args:
        z: ``(2B, D)`` embeddings: the first views of the ``B`` tiles, then their second views.
        group_ids: Name → ``(B,)`` ids (equal id = related) or ``(B, B)`` bool relation.
        weights: Name → weight; ``instance`` (default 1.0) weights the two-view pairs, a group
            missing here weighs 0 (it then only leaves the negatives).
        temperature: Softmax temperature ``t``.
        exclude_groups_from_negatives: Keep related views out of the negatives of each anchor.

    Returns:
        Scalar loss.
    """
    n = z.shape[0]
    if n % 2:
        raise ValueError(f"expected 2B embeddings (two views per tile), got {n}")
    b = n // 2
    weights = dict(weights or {})
    z = F.normalize(z.float(), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    instance = instance_positives(b, device=z.device)
    relations = {"instance": instance}
    for name, ids in group_ids.items():
        rel = _relation(ids.to(z.device), b).repeat(2, 2)  # (2B, 2B)
        relations[name] = rel & ~eye & ~instance
    related = torch.zeros_like(eye)
    for rel in relations.values():
        related |= rel
    neg = ~eye & ~related if exclude_groups_from_negatives else ~eye  # (2B, 2B)
    neg_sum = torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)  # (2B, 1)
    total = z.new_zeros(())
    for name, rel in relations.items():
        w = float(weights.get(name, 1.0 if name == "instance" else 0.0))
        if w == 0 or not bool(rel.any()):
            continue
        if exclude_groups_from_negatives:
            denom = torch.logaddexp(logits, neg_sum.expand_as(logits))  # (2B, 2B): positive + negatives
        else:  # every view but the anchor: the positive itself is already among them
            denom = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1, keepdim=True).expand_as(logits)
        nll = (denom - logits).masked_fill(~rel, 0.0)  # (2B, 2B)
        count = rel.sum(1)
        has = count > 0
        total = total + w * (nll.sum(1)[has] / count[has]).mean()
    return total
