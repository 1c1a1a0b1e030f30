"""Weight-free activation maps: a tiny classifier trained on tags, its CAMs and its features.

The classifier (`TinyFCN` with one map per foreground class) is pooled by log-sum-exp and trained
with BCE against tags. Whole-slice tags rarely vary for organs (the liver is in every slice), so
by default it trains on random crops with *patch tags* (which classes the crop shows, the
patch-level labels of pathology MIL); with ``crop=None`` it uses whole-image tags only. Absolute
position enters as two coordinate channels cut with the crop, so a crop knows where it lies. Its class maps,
rectified and scaled to [0, 1] per image, are the CAMs; its penultimate layer gives per-pixel
features for prototypes (DHR, CPAL) and the GMM refiner (AGMM). Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medwss.embed.engine import resolve_device
from medwss.pseudo.nets import TinyFCN
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


def lse_pool(maps: torch.Tensor, r: float = 5.0) -> torch.Tensor:
    """(B, K) log-sum-exp pooling of (B, K, H, W) maps (r→0: mean, r→∞: max)."""
    flat = maps.flatten(2)
    return (torch.logsumexp(r * flat, dim=2) - np.log(flat.shape[2])) / r


def tags_from_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(K-1,) float tags: which foreground classes occur in a label map."""
    return np.array([float((labels == c).any()) for c in range(1, n_classes)], dtype=np.float32)


def add_coords(image: np.ndarray) -> np.ndarray:
    """(C+2, H, W): the image with row and column coordinates in [-1, 1] appended."""
    h, w = image.shape[-2:]
    rr, cc = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    return np.concatenate([image, rr[None], cc[None]]).astype(np.float32)


def patch_tags(labels: np.ndarray, n_classes: int, min_pixels: int = 4) -> np.ndarray:
    """(K-1,) tags of a label map (patch), counting a class only with at least `min_pixels`."""
    return np.array([float((labels == c).sum() >= min_pixels) for c in range(1, n_classes)], dtype=np.float32)


def random_crops(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], n_classes: int, crop: int, per_image: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`per_image` random square crops (with coordinate channels) per image and their patch tags."""
    rng = np.random.default_rng(seed)
    xs, ts = [], []
    for img, lab in zip(images, labels, strict=True):
        full = add_coords(img)
        h, w = lab.shape
        c = min(crop, h, w)
        for _ in range(per_image):
            r0, c0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            xs.append(full[:, r0 : r0 + c, c0 : c0 + c])
            ts.append(patch_tags(lab[r0 : r0 + c, c0 : c0 + c], n_classes))
    return xs, ts


def train_tag_classifier(
    images: Sequence[np.ndarray],
    tags: Sequence[np.ndarray],
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 8,
    width: int = 24,
    seed: int = 0,
    progress: bool = False,
    downsample: int = 2,
    device: str = "auto",
) -> TinyFCN:
    """Train a tag classifier on 2D images.

    Args:
        images: (C, H, W) float arrays (normalised, coordinate channels included), all of one size.
        tags: (K-1,) 0/1 arrays.
        epochs: Passes over the images.
        lr: Adam learning rate.
        batch_size: Images per step.
        width: Feature channels.
        seed: Seed of initialisation and batch order.
        progress: Show a progress bar.
        downsample: Internal resolution divisor of the network (CAMs are upsampled back).
        device: Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU.

    The first channel (the image) gets a random gain and offset (`PRESETS["intensity"]`), on the device.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    x = torch.from_numpy(np.stack(images).astype(np.float32))
    y = torch.from_numpy(np.stack(tags).astype(np.float32))
    model = TinyFCN(x.shape[1], y.shape[1], width=width, coords=False, downsample=downsample).to(dev)
    gain = augment_pipeline(PRESETS["intensity"], label_keys=(), mask_keys=())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(epochs), desc="tag classifier", disable=not progress):
        order = rng.permutation(len(x))
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i : i + batch_size])
            xb, yb = x[idx].to(dev), y[idx].to(dev)  # (B, C, H, W): the image, then the coordinate channels
            image = augment_batch(gain, {"image": xb[:, :1]}, seed=gen)["image"]
            xb = torch.cat([image, xb[:, 1:]], dim=1)
            loss = F.binary_cross_entropy_with_logits(lse_pool(model(xb), r=2.0), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.cpu().eval()


def train_cam_model(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    n_classes: int,
    epochs: int = 15,
    crop: float | None = 0.5,
    per_image: int = 4,
    width: int = 24,
    seed: int = 0,
    progress: bool = False,
) -> TinyFCN:
    """Tag classifier for CAMs from images (C, H, W) and the label maps the tags are read from.

    Args:
        crop: Crop side as a fraction of the shorter image side (patch tags); None = whole-image tags.
        per_image: Crops per image per epoch-set (crops are drawn once, then shuffled every epoch).
    """
    if crop is None:
        xs = [add_coords(im) for im in images]
        ts = [patch_tags(lab, n_classes, 1) for lab in labels]
    else:
        side = max(8, int(round(crop * min(labels[0].shape))))
        xs, ts = random_crops(images, labels, n_classes, side, per_image, seed)
    return train_tag_classifier(xs, ts, epochs, width=width, seed=seed, progress=progress)


@torch.no_grad()
def cams_and_features(model: TinyFCN, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image (C, H, W): (K-1, H, W) CAMs in [0, 1] and (F, H, W) features."""
    cams, feats = [], []
    model.eval()
    for img in images:
        f = model.forward_features(torch.from_numpy(add_coords(np.asarray(img, np.float32)))[None])  # (1, F, H, W)
        m = F.relu(model.forward_head(f))[0]  # (K-1, H, W)
        m = m / m.flatten(1).max(dim=1).values.clamp_min(1e-6)[:, None, None]
        cams.append(m.numpy())
        feats.append(f[0].numpy())
    return cams, feats


def cam_threshold_labels(cams: np.ndarray, tau: float = 0.5, tags: np.ndarray | None = None) -> np.ndarray:
    """The plain baseline: argmax of the CAMs where the best one clears `tau`, else background."""
    c = cams if tags is None else cams * np.asarray(tags, dtype=np.float32).reshape(-1, *([1] * (cams.ndim - 1)))
    out = (c.argmax(axis=0) + 1).astype(np.int64)
    out[c.max(axis=0) < tau] = 0
    return out


def with_background(cams: np.ndarray, tau: float = 0.5) -> np.ndarray:
    """(K, *S) class scores from (K-1, *S) CAMs: background score ``tau`` in front, columns normalised."""
    bg = np.full((1,) + cams.shape[1:], tau, dtype=np.float32)
    s = np.concatenate([bg, cams.astype(np.float32)], axis=0)
    return s / np.maximum(s.sum(axis=0, keepdims=True), 1e-6)


def point_cams(
    raw: np.ndarray,
    points: np.ndarray,
    n_classes: int,
    stats: np.ndarray,
    sigma_px: float = 8.0,
    smooth: float = 1.0,
) -> np.ndarray:
    """Activation maps from point labels: intensity likelihood × closeness to the class's points.

    Args:
        raw: (H, W) intensities (HU for CT).
        points: (H, W) sparse labels (`IGNORE` = -1 elsewhere); classes without a point get a zero map.
        n_classes: Classes including background.
        stats: (K, 2) mean and standard deviation of each class's intensity (see `point_stats`).
        sigma_px: Spatial spread (pixels) of the closeness term.
        smooth: Gaussian sigma (pixels) applied to the image before the likelihood.

    Returns:
        (K-1, H, W) maps in [0, 1].
    """
    from scipy import ndimage

    img = ndimage.gaussian_filter(np.asarray(raw, np.float64), smooth) if smooth > 0 else np.asarray(raw, np.float64)
    out = np.zeros((n_classes - 1,) + img.shape, dtype=np.float32)
    for c in range(1, n_classes):
        sel = points == c
        if not sel.any():
            continue
        mu, sd = stats[c]
        like = np.exp(-0.5 * ((img - mu) / sd) ** 2)
        near = np.exp(-0.5 * (ndimage.distance_transform_edt(~sel) / sigma_px) ** 2)
        out[c - 1] = like * near
    return out


def point_stats(
    raws: Sequence[np.ndarray], points: Sequence[np.ndarray], n_classes: int, floor: float = 10.0
) -> np.ndarray:
    """(K, 2) mean and standard deviation (at least `floor`) of intensities at each class's points."""
    vals: list[list[float]] = [[] for _ in range(n_classes)]
    for r, p in zip(raws, points, strict=True):
        for c in range(n_classes):
            vals[c] += np.asarray(r)[p == c].tolist()
    return np.array([[np.mean(v), max(float(np.std(v)), floor)] if v else [0.0, 1e9] for v in vals])
