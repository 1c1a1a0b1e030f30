"""CPAL-style context prototypes: complete activation maps with prototypes of each class's contexts.

A class-wise bank stores features of confidently activated pixels; k-means splits each class's
bank into context prototypes (an organ looks different at its edge, its centre, its hilum); every
pixel is compared with the prototypes of each class, its top-K similarities soft-weighted into a
prototype-aware activation map (PAM). The PAM is fused with the CAM, and an L1 consistency loss
ties the two when training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class PrototypeBank:
    """Class-wise memory of pixel features (FIFO, `size` per class).

    Args:
        n_classes: Number of foreground classes (maps of the CAM).
        dim: Feature channels.
        size: Features kept per class.
        seed: Seed of the pixel subsampling.
    """

    def __init__(self, n_classes: int, dim: int, size: int = 2000, seed: int = 0) -> None:
        self.n_classes, self.dim, self.size = n_classes, dim, size
        self.rng = np.random.default_rng(seed)
        self.store: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32) for _ in range(n_classes)]

    def update(self, features: np.ndarray, cams: np.ndarray, threshold: float = 0.7, per_image: int = 200) -> None:
        """Add features (F, *S) of pixels whose CAM (K, *S) for a class is ≥ `threshold` and the highest."""
        f = features.reshape(self.dim, -1).T.astype(np.float32)
        c = cams.reshape(self.n_classes, -1)
        best = c.argmax(axis=0)
        for k in range(self.n_classes):
            idx = np.flatnonzero((c[k] >= threshold) & (best == k))
            if idx.size == 0:
                continue
            idx = self.rng.choice(idx, size=min(per_image, idx.size), replace=False)
            self.store[k] = np.concatenate([self.store[k], f[idx]])[-self.size :]

    def context_prototypes(self, n_contexts: int = 4, seed: int = 0) -> list[np.ndarray]:
        """Per class, (m, F) k-means centroids of its bank (m ≤ `n_contexts`; empty for an empty bank)."""
        from sklearn.cluster import KMeans

        out = []
        for feats in self.store:
            if len(feats) == 0:
                out.append(np.zeros((0, self.dim), dtype=np.float32))
                continue
            m = min(n_contexts, len(feats))
            km = KMeans(m, n_init=3, random_state=seed).fit(feats)
            out.append(km.cluster_centers_.astype(np.float32))
        return out


def prototype_activation(
    features: torch.Tensor, prototypes: list[torch.Tensor], top_k: int = 3, temperature: float = 0.1
) -> torch.Tensor:
    """Prototype-aware activation maps.

    Args:
        features: (F, *S) features of one image.
        prototypes: Per class, (m, F) context prototypes (an empty class gives a zero map).
        top_k: Neighbours (most similar prototypes) soft-weighted per pixel.
        temperature: Softmax temperature of the neighbour weights.

    Returns:
        (K, *S) maps in [0, 1] (cosine similarity mapped from [-1, 1]).
    """
    nf = features.shape[0]
    f = F.normalize(features.reshape(nf, -1), dim=0)  # (F, N)
    maps = []
    for protos in prototypes:
        if protos.shape[0] == 0:
            maps.append(f.new_zeros(f.shape[1]))
            continue
        sim = F.normalize(protos, dim=1) @ f  # (m, N)
        top = sim.topk(min(top_k, sim.shape[0]), dim=0).values  # (k, N)
        w = torch.softmax(top / temperature, dim=0)
        maps.append(((w * top).sum(0) + 1.0) / 2.0)
    return torch.stack(maps).reshape((len(prototypes),) + tuple(features.shape[1:]))


def normalise_maps(maps: torch.Tensor, low_quantile: float = 0.5) -> torch.Tensor:
    """Per-map rescaling to [0, 1] between its `low_quantile` and its maximum (similarities are compressed)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.quantile(low_quantile, dim=1, keepdim=True)
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1).reshape(maps.shape)


def fuse_cam_pam(cam: torch.Tensor, pam: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """(1 - alpha)·CAM + alpha·PAM."""
    return (1.0 - alpha) * cam + alpha * pam


def consistency_l1(cam: torch.Tensor, pam: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between CAM and PAM (the training-time consistency term)."""
    return (cam - pam).abs().mean()


def cpal_maps(
    features: np.ndarray,
    cams: np.ndarray,
    prototypes: list[np.ndarray],
    tags: np.ndarray | None = None,
    top_k: int = 3,
    alpha: float = 0.5,
) -> np.ndarray:
    """Offline CPAL for one image: fused (K, *S) map from features (F, *S), CAMs (K, *S) and context prototypes."""
    with torch.no_grad():
        pam = normalise_maps(
            prototype_activation(
                torch.from_numpy(features.astype(np.float32)), [torch.from_numpy(p) for p in prototypes], top_k
            )
        )
        fused = fuse_cam_pam(torch.from_numpy(cams.astype(np.float32)), pam, alpha).numpy()
    if tags is not None:
        fused = fused * np.asarray(tags, dtype=np.float32).reshape(-1, *([1] * (fused.ndim - 1)))
    return fused
