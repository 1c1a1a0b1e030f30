"""Weight-free activation maps: a tiny classifier trained on tags, its CAMs and its features.

The classifier (`TinyFCN` with one map per foreground class) is pooled by log-sum-exp and trained
with BCE against tags. Whole-slice tags rarely vary for organs (the liver is in every slice), so
by default it trains on random crops with *patch tags* (which classes the crop shows, the
patch-level labels of pathology MIL); with ``crop=None`` it uses whole-image tags only. Absolute
position enters as two coordinate channels cut with the crop, so a crop knows where it lies. Its class maps,
rectified and scaled to [0, 1] per image, are the CAMs; its penultimate layer gives per-pixel
features for prototypes (DHR, CPAL) and the GMM refiner (AGMM). Nothing is downloaded.

Training runs on the one engine (`medwss.train.fit`): on the configured device, seeded (batch
order and augmentation are functions of seed, epoch and batch), resumable from a checkpoint with
the same final weights; the classifier is saved as the one model file (kind ``pseudo_cam``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.errors import ConfigError
from medwss.pseudo.nets import TinyFCN
from medwss.train import Context, EngineConfig, fit, register_model_kind
from medwss.train.device import resolve_device
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


def step_seed(*keys: int) -> int:
    """A 32-bit seed that is a function of `keys` only (seed, epoch, batch...): resumed runs draw the same."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def fingerprint(*arrays: torch.Tensor | np.ndarray | None) -> str:
    """SHA-1 of the arrays' shapes and bytes: part of a checkpoint's signature, so other data is not resumed."""
    h = hashlib.sha1()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        v = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(f"{v.dtype}{v.shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def fcn_config(model: nn.Module) -> dict[str, Any]:
    """What `build_fcn` rebuilds a `TinyFCN` from (its constructor arguments)."""
    if not isinstance(model, TinyFCN):
        raise ConfigError(f"only TinyFCN networks are saved as pseudo-label model files (got {type(model).__name__})")
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    return {
        "in_channels": convs[0].in_channels - (2 if model.coords else 0),
        "out_channels": model.head.out_channels,
        "width": model.num_features,
        "dilations": [int(c.dilation[0]) for c in convs],
        "coords": bool(model.coords),
        "downsample": int(model.downsample),
    }


def build_fcn(config: dict[str, Any]) -> TinyFCN:
    """A `TinyFCN` from `fcn_config`'s dict."""
    return TinyFCN(
        int(config["in_channels"]), int(config["out_channels"]), width=int(config["width"]),
        dilations=tuple(int(d) for d in config["dilations"]), coords=bool(config["coords"]),
        downsample=int(config["downsample"]),
    )  # fmt: skip


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
    amp: bool = False,
    checkpoint: str | Path | None = None,
) -> TinyFCN:
    """Train a tag classifier on 2D images (on the one engine, `medwss.train.fit`).

    Args:
        images: (C, H, W) float arrays (normalised, coordinate channels included), all of one size.
        tags: (K-1,) 0/1 arrays.
        epochs: Passes over the images.
        lr: Adam learning rate.
        batch_size: Images per step.
        width: Feature channels.
        seed: Seed of initialisation, batch order and augmentation (each a function of seed, epoch, batch).
        progress: Show a progress bar.
        downsample: Internal resolution divisor of the network (CAMs are upsampled back).
        device: Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU.
        amp: Mixed precision (CUDA only).
        checkpoint: Checkpoint file, written every epoch and resumed from when present (same
            settings and data, else a `ConfigError` names what changed; more `epochs` continue it).

    The first channel (the image) gets a random gain and offset (`PRESETS["intensity"]`), on the device.
    """
    torch.manual_seed(seed)
    dev = resolve_device(device)
    x = torch.from_numpy(np.stack(images).astype(np.float32))
    y = torch.from_numpy(np.stack(tags).astype(np.float32))
    model = TinyFCN(x.shape[1], y.shape[1], width=width, coords=False, downsample=downsample)
    gain = augment_pipeline(PRESETS["intensity"], label_keys=(), mask_keys=())
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def data(epoch: int) -> list[torch.Tensor]:
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(x)))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def step(idx: torch.Tensor, ctx: Context) -> torch.Tensor:
        xb, yb = x[idx].to(ctx.device), y[idx].to(ctx.device)  # (B, C, H, W): the image, then the coordinate channels
        image = augment_batch(gain, {"image": xb[:, :1]}, seed=step_seed(seed, ctx.epoch, ctx.batch_index))["image"]
        xb = torch.cat([image, xb[:, 1:]], dim=1)
        return F.binary_cross_entropy_with_logits(lse_pool(ctx.model(xb).float(), r=2.0), yb)

    ecfg = EngineConfig(epochs=epochs, restore_best=False, seed=seed, device=str(dev), amp=amp, progress=progress,
                        desc="tag classifier")  # fmt: skip
    run = {"trainer": "pseudo_cam", "epochs": epochs, "lr": lr, "batch_size": batch_size, "width": width,
           "seed": seed, "downsample": downsample, "amp": amp, "data": fingerprint(x, y)}  # fmt: skip
    fit(model, opt, step, data, ecfg, checkpoint=checkpoint, run_config=run, run_only=("epochs",))
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
    device: str = "auto",
    amp: bool = False,
    checkpoint: str | Path | None = None,
) -> TinyFCN:
    """Tag classifier for CAMs from images (C, H, W) and the label maps the tags are read from.

    Args:
        crop: Crop side as a fraction of the shorter image side (patch tags); None = whole-image tags.
        per_image: Crops per image per epoch-set (crops are drawn once, then shuffled every epoch).
        device, amp, checkpoint: See `train_tag_classifier`.
    """
    if crop is None:
        xs = [add_coords(im) for im in images]
        ts = [patch_tags(lab, n_classes, 1) for lab in labels]
    else:
        side = max(8, int(round(crop * min(labels[0].shape))))
        xs, ts = random_crops(images, labels, n_classes, side, per_image, seed)
    return train_tag_classifier(
        xs, ts, epochs, width=width, seed=seed, progress=progress, device=device, amp=amp, checkpoint=checkpoint
    )


register_model_kind("pseudo_cam", build_fcn)


def save_cam_model(path: str | Path, model: TinyFCN, meta: dict[str, Any] | None = None) -> Path:
    """Save a tag classifier as the one model file (kind ``pseudo_cam``), atomically.

    Its input is the image followed by two coordinate channels (`add_coords`); `meta` is kept beside
    (class names, training settings).
    """
    from medwss.train import save_model

    return save_model(
        path, "pseudo_cam", model, fcn_config(model), {"input": "image + 2 coordinate channels", **(meta or {})}
    )


def load_cam_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[TinyFCN, dict[str, Any]]:
    """A tag classifier saved by `save_cam_model` (eval mode) and its build config plus meta.

    Raises:
        UnsupportedFormatError: The file holds another kind of model.
    """
    from medwss.train import load_model

    model, record = load_model(path, device, kind="pseudo_cam")
    return model, {**record.meta, **record.config}  # type: ignore[return-value]


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
