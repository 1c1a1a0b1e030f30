"""2D frames (PNG/JPEG, RGB or grey: endoscopy, photos) as one-slice cases of `medwss pseudo`, and labels as PNG.

A manifest row whose image is a frame file (`FRAME_SUFFIXES`) is read with PIL at its own size and
becomes a `SliceCase` of one slice: the frame is a one-slice volume ``(H, W, 1)`` with an identity
affine (rows, columns; a pixel counts as 1 mm), so the shared `SliceGeometry` resizes it to the
config's ``slice_size`` (or ``1 / downsample``) and pastes the pseudo-labels back onto the frame's
own grid. Resizing is an area average (PIL ``BOX``; binary masks: area share > 0.5), as in
``benchmarks/pseudo_polyp.py``. Box segmenters get the RGB frame (`SliceCase.colour`, channels
last); the other methods read its luminance (`SliceCase.images` = luminance / 255, `raw` = 0..255;
the config's ``window`` is not used).

Masks: under a two-class label spec a mask is binary — 0/1, 0/255 or a noisy JPEG mask (> 127);
with more classes its values are decoded as label values (`decode_labels`: 255 = unlabelled in a
uint8 file) and mapped by the spec, resized nearest-neighbour.

Pseudo-labels of a frame are written as ``labels/<case>.png``: uint8 on the frame's grid, classes
``0..K-1`` and ``255`` where unlabelled (`VIEWER_UNLABELLED`, the uint8 form of `IGNORE` that
`decode_labels` reads back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medwss.data.labels import IGNORE, VIEWER_UNLABELLED, decode_labels
from medwss.data.manifest import Case
from medwss.errors import InvalidDataError
from medwss.pseudo.config import PseudoConfig
from medwss.pseudo.volumes import SliceCase

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Image files read as 2D frames (PIL); every other image goes through `medwss.io.volumes.load_volume`."""


def is_frame(path: str | Path) -> bool:
    """Whether `path` names a 2D frame file (by its suffix)."""
    return Path(path).suffix.lower() in FRAME_SUFFIXES


def _open(path: Path):  # noqa: ANN202
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()  # a truncated or corrupt file fails here, not later
    except FileNotFoundError:
        raise InvalidDataError("frame file not found", path) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidDataError(f"cannot read the frame: {exc}", path) from None
    return im


def read_frame(path: str | Path) -> np.ndarray:
    """A frame: ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` float32 luminance in 0..255 for a grey file.

    Raises:
        InvalidDataError: Missing, corrupt or unreadable file (names it).
    """
    with _open(Path(path)) as im:
        if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(im)
            if a.dtype == bool:
                return a.astype(np.float32) * 255.0
            if np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize > 1:  # 16-bit grey: 0..65535 to 0..255
                top = 65535.0 if a.size and a.max() <= 65535 else float(max(a.max(initial=1), 1))
                return a.astype(np.float32) * np.float32(255.0 / top)
            return a.astype(np.float32)
        return np.asarray(im.convert("RGB"))


def read_binary_mask(path: str | Path) -> np.ndarray:
    """A frame's binary mask file (0/1, 0/255, a noisy JPEG mask: > 127) → ``(H, W)`` int64 0/1."""
    with _open(Path(path)) as im:  # colour-saved masks (RGB JPEG) through their luminance
        a = np.asarray(im if im.mode in ("1", "L", "P", "I", "I;16") else im.convert("L")).astype(np.int64)
    return (a > (127 if a.size and a.max() > 1 else 0)).astype(np.int64)


def frame_shape(shape: tuple[int, int], cfg: PseudoConfig) -> tuple[int, int]:
    """The slice size of a frame of `shape`: ``slice_size`` squared, else ``ceil(side / downsample)``."""
    if cfg.slice_size:
        return cfg.slice_size, cfg.slice_size
    return -(-shape[0] // cfg.downsample), -(-shape[1] // cfg.downsample)


def area_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize (PIL BOX) of an (H, W, 3) uint8 or (H, W) float frame to ``size = (h, w)``."""
    from PIL import Image

    if a.shape[:2] == size:
        return a
    mode = "RGB" if a.ndim == 3 else "F"
    im = Image.fromarray(np.ascontiguousarray(a if a.ndim == 3 else a.astype(np.float32)), mode=mode)
    return np.asarray(im.resize((size[1], size[0]), Image.Resampling.BOX))


def binary_resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask resized by area share > 0.5 (as ``benchmarks/pseudo_polyp.py``)."""
    from PIL import Image

    if mask.shape == size:
        return mask.astype(np.int64)
    im = Image.fromarray((mask > 0).astype(np.uint8) * 255)
    return (np.asarray(im.resize((size[1], size[0]), Image.Resampling.BOX)) > 127).astype(np.int64)


def slice_frame(case: Case, cfg: PseudoConfig) -> SliceCase:
    """Read one frame case (first image column; mask and scribble when present) as a one-slice `SliceCase`.

    Raises:
        InvalidDataError: A file cannot be read, or a label map does not have the frame's size.
    """
    from medwss.data.slicer import plan_slices
    from medwss.io.volume import Volume
    from medwss.pseudo.tiles import tile_channel

    path = Path(case.image)
    frame = read_frame(path)
    h, w = frame.shape[:2]
    geom = plan_slices(Volume(np.zeros((h, w, 1), np.uint8), np.eye(4)), size=frame_shape((h, w), cfg))
    size = geom.slice_shape
    small = area_resize(frame, size)
    raw = np.ascontiguousarray(small if small.ndim == 2 else tile_channel(small, "grey"), dtype=np.float32)
    spec = cfg.spec()
    labels = {}
    for name in ("mask", "scribble"):
        lp = getattr(case, name, None)
        if lp is None:
            continue
        binary = name == "mask" and spec.num_classes == 2
        lab = read_binary_mask(lp) if binary else spec.remap(load_frame_labels(lp))
        if lab.shape != (h, w):
            raise InvalidDataError(f"{name} of shape {lab.shape} does not fit the frame {(h, w)}", lp)
        resized = binary_resize(lab, size) if binary else geom.cut_canonical(lab[:, :, None], True, IGNORE)[0]
        labels[name] = np.ascontiguousarray(resized, dtype=np.int64)
    volume = Volume(raw[:, :, None], np.eye(4), {"modality": case.modality}, str(path))
    return SliceCase(
        case.case_id, case.split, geom, volume, [raw[None] / np.float32(255.0)], [raw],
        [labels["mask"]] if "mask" in labels else None,
        [labels["scribble"]] if "scribble" in labels else None,
        colour=[small] if small.ndim == 3 else None, frame=str(path),
    )  # fmt: skip


def _frame_values(path: str | Path) -> np.ndarray:
    with _open(Path(path)) as im:
        return np.asarray(im)


def encode_frame_labels(labels: np.ndarray) -> np.ndarray:
    """An in-memory label map as a frame's label PNG holds it: uint8, `IGNORE` → 255.

    Raises:
        InvalidDataError: Values outside ``-1..254``.
    """
    a = np.asarray(labels)
    if a.size and (a.min() < IGNORE or a.max() >= VIEWER_UNLABELLED):
        raise InvalidDataError(f"frame label values must lie in [-1, 254], got [{a.min()}, {a.max()}]")
    return np.where(a == IGNORE, VIEWER_UNLABELLED, a).astype(np.uint8)


def save_frame_labels(labels: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W) label map as uint8 PNG (255 = unlabelled), atomically."""
    from PIL import Image

    from medwss.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(encode_frame_labels(labels)).save(tmp, format="PNG")
    return Path(path)


def load_frame_labels(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """A frame's label PNG → (H, W) int64 with `IGNORE` where unlabelled (255)."""
    return decode_labels(_frame_values(path), num_classes, source=path)


def frame_preview_png(case: SliceCase, labels: np.ndarray, path: str | Path, min_side: int = 192) -> Path:
    """The frame at slice size (enlarged by a whole factor to `min_side`) with its pseudo-labels blended over it.

    Colours as the volume previews (tab10: unlabelled 0, classes 1.. from the second colour; background clear).
    """
    from medwss.viz.overlay import heatmap_overlay_png

    base = case.colour[0] if case.colour is not None else np.clip(case.raw[0], 0, 255).astype(np.uint8)
    zoom = max(1, -(-min_side // max(min(base.shape[:2]), 1)))
    base = base.repeat(zoom, axis=0).repeat(zoom, axis=1)
    lab = np.asarray(labels)
    heat = np.where(lab > 0, lab.astype(np.float64), np.nan)
    heat[lab < 0] = 0.0
    return heatmap_overlay_png(base, heat, path, cmap="tab10", vmin=0, vmax=9)
