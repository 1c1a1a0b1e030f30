"""Cases as stacks of 2D axial slices for the pseudo-label methods, cut and pasted by the shared slicer.

`slice_case` reads a manifest row with `medwss.data.subject.load_subject` (canonical RAS+ grid,
label maps decoded with `IGNORE`), maps the mask and scribble values to classes with the config's
`LabelSpec`, and cuts axial slices with `medwss.data.slicer.plan_slices` — axial whatever the
stored axis order, resized in-plane by ``1 / downsample``. A `SliceCase` keeps the
`SliceGeometry`, so `SliceCase.to_source` pastes per-slice pseudo-labels back onto the *source*
grid, to be written with the source affine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from medwss.data.labels import IGNORE
from medwss.data.manifest import Case
from medwss.data.slicer import SliceGeometry, plan_slices
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume
from medwss.pseudo.box import Box
from medwss.pseudo.config import PseudoConfig
from medwss.transforms.intensity import normalise


@dataclass
class SliceCase:
    """One case, sliced.

    Attributes:
        case_id: From the manifest.
        split: Manifest split (train/val/test) or None.
        geometry: Where the slices sit in the source volume (for paste-back and the source affine).
        volume: The image on its canonical grid (for previews); of a frame, its luminance at slice size.
        images: Per slice (1, H, W) float32, windowed to [0, 1].
        raw: Per slice (H, W) raw intensities (HU), resized like `images`.
        gts: Per slice (H, W) int64 classes, or None without a mask.
        scribbles: Per slice sparse labels from the manifest's scribble column (`IGNORE` where
            unlabelled), or None.
        colour: Per slice (H, W, 3) uint8 RGB of a colour frame (what box segmenters get), or None.
        frame: The file of a 2D frame case (`medwss.pseudo.frames`: labels written as PNG), None for a volume.
    """

    case_id: str
    split: str | None
    geometry: SliceGeometry
    volume: Volume
    images: list[np.ndarray]
    raw: list[np.ndarray]
    gts: list[np.ndarray] | None = None
    scribbles: list[np.ndarray] | None = None
    meta: dict[str, object] = field(default_factory=dict)
    colour: list[np.ndarray] | None = None
    frame: str | None = None

    @property
    def affine(self) -> np.ndarray:
        """The source voxel → world affine (every written pseudo-label carries it)."""
        return self.geometry.orientation.affine

    @property
    def scale(self) -> float:
        """Slice pixels per native voxel in-plane (``1 / downsample``, about)."""
        return self.geometry.slice_shape[0] / self.geometry.crop_shape[0]

    def subset(self, keep: Sequence[int], case_id: str | None = None, split: str | None = None) -> SliceCase:
        """The case restricted to slices `keep` (positions in `images`), e.g. blocks of one volume."""
        ks = [int(k) for k in keep]
        geom = replace(self.geometry, indices=[self.geometry.indices[k] for k in ks])
        return replace(
            self,
            case_id=case_id or self.case_id,
            split=split if split is not None else self.split,
            geometry=geom,
            images=[self.images[k] for k in ks],
            raw=[self.raw[k] for k in ks],
            gts=[self.gts[k] for k in ks] if self.gts is not None else None,
            scribbles=[self.scribbles[k] for k in ks] if self.scribbles is not None else None,
            colour=[self.colour[k] for k in ks] if self.colour is not None else None,
        )

    def to_source(self, labels: Sequence[np.ndarray]) -> np.ndarray:
        """Per-slice label maps → one int64 map on the source grid (`IGNORE` where no slice reaches)."""
        return self.geometry.paste(np.stack([np.asarray(x) for x in labels]), label=True, fill=IGNORE)

    def from_source(self, labels: np.ndarray) -> list[np.ndarray]:
        """A label map on the source grid (e.g. a pseudo-label file read back) → per-slice maps."""
        return list(self.geometry.cut(np.asarray(labels), label=True, fill=IGNORE))


def slice_case(case: Case, cfg: PseudoConfig) -> SliceCase:
    """Load and slice one manifest case (first image channel, and mask/scribble when present).

    A 2D frame (PNG/JPEG, `medwss.pseudo.frames.FRAME_SUFFIXES`) is one slice (`slice_frame`).

    Raises:
        InvalidDataError: The image is not a 3D volume, or a label map does not fit it.
    """
    from medwss.data.subject import load_subject
    from medwss.pseudo.frames import is_frame, slice_frame

    if case.images and is_frame(case.image):
        return slice_frame(case, cfg)

    subject = load_subject(case, channels=list(case.images)[:1])
    vol = subject.image
    o = subject.orientation
    if o is None:  # pragma: no cover - load_subject always sets it
        raise InvalidDataError(f"case {case.case_id}: no orientation")
    X, Y, _ = o.canonical_shape
    s = cfg.downsample
    size = (cfg.slice_size, cfg.slice_size) if cfg.slice_size else (math.ceil(X / s), math.ceil(Y / s))
    geom = plan_slices(o, size=size)
    raw_stack = geom.cut_canonical(np.asarray(vol.array, dtype=np.float32))  # (N, H, W) HU
    window = cfg.window_range()
    raws = [np.ascontiguousarray(r) for r in raw_stack]
    images = [normalise(r, "window", window)[None] for r in raws]
    spec = cfg.spec()
    gts = scr = None
    mask = subject.label("mask")
    if mask is not None:
        gts = list(geom.cut_canonical(spec.remap(mask), label=True, fill=IGNORE))
    scribble = subject.label("scribble")
    if scribble is not None:
        scr = list(geom.cut_canonical(spec.remap(scribble), label=True, fill=IGNORE))
    return SliceCase(case.case_id, case.split, geom, vol, images, raws, gts, scr)


def slice_boxes(boxes: Sequence[Box], geometry: SliceGeometry) -> list[list[Box]]:
    """Boxes in *source* array indices (a detector's file) → the boxes of every slice, in slice pixels.

    A 3D box ``(i0, j0, k0) .. (i1, j1, k1)`` is read on the stored grid, put on the canonical grid,
    and cut by every axial slice it crosses; a 2D box lies on the stored array's two in-plane axes
    (the two that are not axial) and applies to every slice. In-plane corners are scaled to the
    slice size, rounded outwards.
    """
    o = geometry.orientation
    ax = o.axial_axis
    i0, _, j0, _ = geometry.box
    (h, w), (ch, cw) = geometry.slice_shape, geometry.crop_shape
    per_slice: list[list[Box]] = [[] for _ in geometry.indices]
    for b in boxes:
        lo, hi = list(b.lo), list(b.hi)
        if len(lo) == 2:
            lo.insert(ax, 0)
            hi.insert(ax, o.shape[ax])
        if len(lo) != 3:
            raise InvalidDataError(f"a box on a volume needs 2 or 3 corners per side, got {len(b.lo)}")
        clo, chi = [0, 0, 0], [0, 0, 0]
        for axis, (target, flip) in enumerate(o.ornt):
            t, n = int(target), o.shape[axis]
            a, z = max(lo[axis], 0), min(hi[axis], n)
            clo[t], chi[t] = (n - z, n - a) if flip < 0 else (a, z)
        if any(z <= a for a, z in zip(clo, chi, strict=True)):
            continue
        r0, r1 = math.floor((clo[0] - i0) * h / ch), math.ceil((chi[0] - i0) * h / ch)
        c0, c1 = math.floor((clo[1] - j0) * w / cw), math.ceil((chi[1] - j0) * w / cw)
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        if r1 <= r0 or c1 <= c0:
            continue
        for n, k in enumerate(geometry.indices):
            if clo[2] <= k < chi[2]:
                per_slice[n].append(Box((r0, c0), (r1, c1), b.label, b.score))
    return per_slice
