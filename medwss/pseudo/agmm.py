"""AGMM: Gaussian mixtures over the features of labelled pixels supervise the unlabelled ones.

`AGMMLoss` works on any encoder's per-pixel features and a head's logits with sparse labels
(points, scribbles, blocks, boxes: `IGNORE` elsewhere) and optional image labels:

* partial cross-entropy on labelled pixels (classes weighted by inverse square-root frequency);
* Gaussian-mixture term: each present class is a Gaussian (mean and diagonal variance of its
  labelled features); its posterior on unlabelled pixels is a soft target for the logits, and
  the features are pulled towards the Gaussian of the class the network predicts;
* prototype separation: class means pushed apart (hinge on their cosine similarity);
* negative term: classes the image labels say are absent are pushed to zero everywhere.

`gmm_refine` is the offline counterpart: per-class Gaussian mixtures (scikit-learn) fitted on the
features of labelled pixels relabel the rest, abstaining where the posterior is unsure.

`within_reach` is a spatial prior for the labels either gives: pixels farther than a distance from
every foreground scribble of their slice are background (on ACDC, where the background scribbles
lie next to the heart, the far field is otherwise unsupervised and bright tissue there takes the
LV's label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medwss.data.labels import IGNORE
from medwss.pseudo.nets import class_weights


@dataclass
class AGMMLossParts:
    """The loss and its terms (floats, for logging)."""

    total: torch.Tensor
    ce: float
    gmm: float
    separation: float
    negative: float


class AGMMLoss(torch.nn.Module):
    """AGMM loss for sparse labels.

    Args:
        n_classes: Number of classes including background.
        w_gmm: Weight of the Gaussian-mixture term.
        w_sep: Weight of prototype separation.
        w_neg: Weight of the negative term.
        margin: Cosine similarity above which prototypes are pushed apart.
        confidence: Mixture posterior an unlabelled pixel needs to be supervised by the GMM term.
    """

    def __init__(
        self,
        n_classes: int,
        w_gmm: float = 0.5,
        w_sep: float = 0.1,
        w_neg: float = 0.5,
        margin: float = 0.2,
        confidence: float = 0.9,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.confidence = confidence
        self.w_gmm, self.w_sep, self.w_neg, self.margin = w_gmm, w_sep, w_neg, margin

    def forward(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        sparse: torch.Tensor,
        present: torch.Tensor | None = None,
        gmm_scale: float = 1.0,
    ) -> AGMMLossParts:
        """Loss of a batch.

        Args:
            features: (B, F, H, W) per-pixel features.
            logits: (B, K, H, W) class logits.
            sparse: (B, H, W) int64 labels, `IGNORE` where unlabelled.
            present: (B, K) bool image labels; None = all classes possible.
            gmm_scale: Multiplies the Gaussian-mixture weight (ramped up from 0 while features form).
        """
        b, nf = features.shape[:2]
        k = self.n_classes
        f = F.normalize(features, dim=1).permute(0, 2, 3, 1).reshape(-1, nf)  # (N, F)
        lg = logits.permute(0, 2, 3, 1).reshape(-1, k)  # (N, K)
        y = sparse.reshape(-1)
        lab = y != IGNORE
        ce = F.cross_entropy(lg[lab], y[lab], weight=class_weights(y[lab], k)) if lab.any() else lg.sum() * 0.0
        mus, vars_, have = [], [], []
        for c in range(k):
            fc = f[y == c]
            have.append(len(fc) > 0)
            mus.append(fc.mean(0) if len(fc) else f.new_zeros(nf))
            vars_.append(fc.var(0, unbiased=False).mean() + 1e-2 if len(fc) > 1 else f.new_tensor(0.1))
        mu = torch.stack(mus)  # (K, F)
        var = torch.stack(vars_)  # (K,)
        ok = torch.tensor(have)
        gmm = lg.sum() * 0.0
        unl = ~lab
        if ok.sum() > 1 and unl.any():
            d2 = torch.cdist(f[unl], mu) ** 2  # (U, K)
            var = var[ok].mean().expand(k)  # pooled variance: few labelled pixels give unstable per-class ones
            log_post = -d2 / (2 * var)
            log_post[:, ~ok] = -torch.inf
            target = torch.softmax(log_post, dim=1).detach()
            sure = target.max(dim=1).values >= self.confidence  # only confident mixture posteriors teach
            if sure.any():
                soft_ce = -(target[sure] * F.log_softmax(lg[unl][sure], dim=1)).sum(1).mean()
                pull = (torch.softmax(lg[unl], dim=1).detach()[:, ok] * d2[:, ok] / (2 * var[ok])).sum(1).mean()
                gmm = soft_ce + 0.1 * pull
        sep = lg.sum() * 0.0
        if ok.sum() > 1:
            m = F.normalize(mu[ok], dim=1)
            cos = m @ m.t()
            off = ~torch.eye(len(m), dtype=torch.bool)
            sep = F.relu(cos[off] - self.margin).mean()
        neg = lg.sum() * 0.0
        if present is not None:
            absent = ~present.bool()  # (B, K)
            if absent.any():
                p = torch.softmax(logits, dim=1)  # (B, K, H, W)
                pa = p.permute(0, 2, 3, 1)[absent[:, None, None, :].expand(-1, *p.shape[2:], -1)]
                neg = -torch.log1p(-pa.clamp(max=1 - 1e-6)).mean()
        total = ce + gmm_scale * self.w_gmm * gmm + self.w_sep * sep + self.w_neg * neg
        return AGMMLossParts(total, float(ce.detach()), float(gmm.detach()), float(sep.detach()), float(neg.detach()))


def gmm_refine(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    n_components: int = 2,
    confidence: float = 0.8,
    present: np.ndarray | None = None,
    max_samples: int = 2000,
    seed: int = 0,
    standardize: bool = True,
) -> np.ndarray:
    """Relabel an image from per-class Gaussian mixtures fitted on its labelled pixels.

    Args:
        features: (F, *S) per-pixel features (e.g. intensity, position, network features).
        labels: (*S) sparse or pseudo labels with `IGNORE`; labelled pixels keep their label.
        n_classes: Number of classes including background.
        n_components: Gaussians per class.
        confidence: Minimum posterior to label a pixel; below it, `IGNORE`.
        present: (K,) bool, classes allowed (all with labelled pixels if None).
        max_samples: Labelled pixels used per class for fitting.
        seed: Seed of sampling and fitting.
        standardize: Scale every feature to unit variance first (off for pre-weighted features).

    Returns:
        (*S) int64 labels.
    """
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    nf = features.shape[0]
    x = features.reshape(nf, -1).T.astype(np.float64)
    if standardize:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = labels.reshape(-1)
    loglik = np.full((x.shape[0], n_classes), -np.inf)
    counts = np.array([(y == c).sum() for c in range(n_classes)], dtype=np.float64)
    for c in range(n_classes):
        if counts[c] < 2 or (present is not None and not present[c]):
            continue
        idx = np.flatnonzero(y == c)
        idx = rng.choice(idx, size=min(max_samples, idx.size), replace=False)
        gm = GaussianMixture(
            min(n_components, max(1, idx.size // 5)), covariance_type="diag", reg_covar=1e-3, random_state=seed
        )
        gm.fit(x[idx])
        loglik[:, c] = gm.score_samples(x)
    if np.isinf(loglik).all():
        return labels.astype(np.int64).copy()
    post = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    out = post.argmax(axis=1).astype(np.int64)
    out[post.max(axis=1) < confidence] = IGNORE
    keep = y != IGNORE
    out[keep] = y[keep]
    return out.reshape(labels.shape)


def position_features(image: np.ndarray, extra: np.ndarray | None = None, position_weight: float = 0.3) -> np.ndarray:
    """(F, *S) features for `gmm_refine`: standardised intensity and smoothed intensity, weighted coordinates.

    Use with ``gmm_refine(..., standardize=False)`` so that `position_weight` (how much location
    counts against intensity) is kept.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    img = (img - img.mean()) / (img.std() + 1e-6)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in img.shape], indexing="ij")
    chans = [img, ndimage.gaussian_filter(img, 1.5), *[position_weight * g for g in grids]]
    feats = np.stack(chans)
    if extra is not None:
        feats = np.concatenate([feats, np.asarray(extra, dtype=np.float64)], axis=0)
    return feats


def within_reach(labels: np.ndarray, sparse: np.ndarray, reach_mm: float, pixel_mm: tuple[float, float]) -> np.ndarray:
    """`labels` of one slice with every pixel farther than `reach_mm` from all foreground scribbles set to background.

    Args:
        labels: (H, W) int labels (`IGNORE` where abstaining).
        sparse: (H, W) the slice's sparse labels: classes > 0 are foreground scribbles, 0 background,
            `IGNORE` unlabelled. A slice without a foreground scribble is background everywhere but at
            its labelled pixels (every present structure is scribbled).
        reach_mm: Distance (mm) from the nearest foreground scribble beyond which a pixel is background.
        pixel_mm: In-plane pixel size (mm) of the slice (`medwss.data.slicer.SliceGeometry.pixel_mm`).

    Returns:
        (H, W) int64 labels; scribbled pixels keep their scribble's class.
    """
    from scipy import ndimage

    out = np.asarray(labels, dtype=np.int64).copy()
    fg = np.asarray(sparse) > 0
    far = np.ones(fg.shape, bool) if not fg.any() else ndimage.distance_transform_edt(~fg, sampling=pixel_mm) > reach_mm
    out[far] = 0
    keep = np.asarray(sparse) != IGNORE
    out[keep] = np.asarray(sparse)[keep]
    return out
