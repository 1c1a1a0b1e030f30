"""DHR-style rebalancing: Sinkhorn optimal transport over activation maps so minor classes survive.

Under a plain argmax a small organ with weak activations is swallowed by its large neighbours.
Sinkhorn transport assigns pixels to classes so that each class receives a prescribed share of
the pixels (a uniform prior or organ-volume fractions), which recovers it. Prototype heatmaps
(cosine similarity of any features to class prototypes) and grouping of classes whose
prototypes correlate complete the toolkit (DHR's hierarchy: similar classes are rebalanced
together, dissimilar groups apart).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medwss.data.labels import IGNORE


def sinkhorn(scores: np.ndarray, prior: np.ndarray, eps: float = 0.01, n_iter: int = 100) -> np.ndarray:
    """Entropic optimal transport plan between classes (rows) and pixels (columns).

    Args:
        scores: (K, N) affinities (higher = more likely), e.g. class probabilities.
        prior: (K,) share of the pixels each class must receive (normalised to sum 1).
        eps: Entropic regularisation (smaller = closer to a hard assignment).
        n_iter: Sinkhorn iterations.

    Returns:
        (K, N) plan with row sums ``prior`` and column sums ``1/N``.
    """
    import torch

    k, n = scores.shape
    r = torch.as_tensor(np.asarray(prior, dtype=np.float64))
    r = r / r.sum()
    log_r = torch.log(r.clamp_min(1e-300))
    log_c = torch.full((n,), -float(np.log(n)), dtype=torch.float64)
    log_k = torch.as_tensor(np.asarray(scores, dtype=np.float64)) / eps
    log_k[r <= 0] = -torch.inf
    u, v = torch.zeros(k, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for _ in range(n_iter):
        u = log_r - torch.logsumexp(log_k + v[None, :], dim=1)
        u[r <= 0] = -torch.inf
        v = log_c - torch.logsumexp(log_k + u[:, None], dim=0)
    return torch.exp(log_k + u[:, None] + v[None, :]).numpy()


def uniform_prior(n_classes: int) -> np.ndarray:
    """Every class the same share."""
    return np.full(n_classes, 1.0 / n_classes)


def volume_prior(label_maps: Sequence[np.ndarray], n_classes: int, floor: float = 1e-3) -> np.ndarray:
    """Class shares from reference label maps (e.g. organ volumes of a labelled dev set or an atlas)."""
    counts = np.zeros(n_classes)
    for lab in label_maps:
        v = lab[(lab >= 0) & (lab < n_classes)].astype(np.int64)
        counts += np.bincount(v, minlength=n_classes)[:n_classes]
    share = counts / max(counts.sum(), 1.0)
    share = np.maximum(share, floor)
    return share / share.sum()


def presence_prior(label_maps: Sequence[np.ndarray], n_classes: int, floor: float = 1e-3) -> np.ndarray:
    """(K,) mean share of each class over the images where it is present (organ size when visible).

    Use it per image with `slice_prior`: the classes an image shows get these shares and
    background the rest.
    """
    shares: list[list[float]] = [[] for _ in range(n_classes)]
    for lab in label_maps:
        n = max(lab.size, 1)
        for c in range(n_classes):
            k = int((lab == c).sum())
            if k:
                shares[c].append(k / n)
    return np.array([max(float(np.mean(s)), floor) if s else floor for s in shares])


def slice_prior(presence: np.ndarray, present: Sequence[bool] | np.ndarray) -> np.ndarray:
    """(K,) prior of one image: present foreground classes get their `presence_prior` share, background the rest."""
    p = np.where(np.asarray(present, dtype=bool), presence, 0.0).astype(np.float64)
    p[0] = max(1.0 - p[1:].sum(), 0.05)
    return p / p.sum()


def rebalance(
    probs: np.ndarray,
    prior: np.ndarray,
    present: Sequence[bool] | np.ndarray | None = None,
    eps: float = 0.01,
    n_iter: int = 100,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Pseudo-labels from class probabilities by Sinkhorn transport with class shares `prior`.

    Args:
        probs: (K, *S) class scores including background (class 0).
        prior: (K,) class shares; classes absent from this image (``present`` False) get none.
        present: Which classes the image's tags say are present (all if None).
        eps: Entropic regularisation.
        n_iter: Sinkhorn iterations.
        mask: Optional (*S) bool region to label; pixels outside get `IGNORE`.

    Returns:
        (*S) int64 label map.
    """
    k = probs.shape[0]
    shape = probs.shape[1:]
    pr = np.asarray(prior, dtype=np.float64).copy()
    if present is not None:
        pr[~np.asarray(present, dtype=bool)] = 0.0
    flat = probs.reshape(k, -1)
    sel = np.ones(flat.shape[1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    out = np.full(flat.shape[1], IGNORE, dtype=np.int64)
    if sel.any():
        plan = sinkhorn(flat[:, sel], pr, eps=eps, n_iter=n_iter)
        out[sel] = plan.argmax(axis=0)
    return out.reshape(shape)


def class_prototypes(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, C) mean feature of the pixels of each class (NaN rows for classes without pixels).

    Args:
        features: (C, *S) features on the label grid.
        labels: (*S) labels, `IGNORE` skipped.
    """
    c = features.shape[0]
    f = features.reshape(c, -1)
    lab = labels.reshape(-1)
    protos = np.full((n_classes, c), np.nan)
    for k in range(n_classes):
        sel = lab == k
        if sel.any():
            protos[k] = f[:, sel].mean(axis=1)
    return protos


def prototype_heatmaps(features: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """(K, *S) cosine similarity of every pixel's feature to each prototype, mapped to [0, 1].

    Args:
        features: (C, *S) features from any encoder (or intensity/position channels).
        prototypes: (K, C) class prototypes; NaN rows give zero maps.
    """
    c = features.shape[0]
    f = features.reshape(c, -1)
    fn = f / (np.linalg.norm(f, axis=0, keepdims=True) + 1e-8)
    p = np.nan_to_num(prototypes)
    pn = p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-8)
    sim = (pn @ fn + 1.0) / 2.0
    sim[np.isnan(prototypes).any(axis=1)] = 0.0
    return sim.reshape((prototypes.shape[0],) + features.shape[1:])


def group_classes(prototypes: np.ndarray, threshold: float = 0.9) -> list[list[int]]:
    """Groups of classes whose prototypes correlate (Pearson) above `threshold` (single linkage)."""
    k = prototypes.shape[0]
    valid = ~np.isnan(prototypes).any(axis=1)
    corr = np.eye(k)
    if valid.sum() > 1:
        corr[np.ix_(valid, valid)] = np.corrcoef(prototypes[valid])
    parent = list(range(k))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(k):
        for j in range(i + 1, k):
            if valid[i] and valid[j] and corr[i, j] >= threshold:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(k):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())
