"""`TileReader`: the pixels of a `TileSet`'s tiles as float tensors in [0, 1], channel-first.

Slides give (3, S, S) RGB tiles read at the tile set's mpp. Volumes are normalised once per case
(CT: a Hounsfield window; MR and others: 1st–99th percentile), multi-channel cases resampled onto
the first channel's grid, and give (C, S, S) axial tiles, (C·D, S, S) 2.5D stacks (the D slices of
each channel as channels) or (C, S, S, D) 3D patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medwss.embed.tiles import TileSet
from medwss.io.slide import Slide

CT_WINDOW = (-200.0, 300.0)  # abdominal soft-tissue window, HU


def normalise_intensity(
    array: np.ndarray, modality: str | None, ct_window: tuple[float, float] = CT_WINDOW
) -> np.ndarray:
    """Scale a volume to [0, 1]: a HU window for CT, the 1st–99th percentile otherwise."""
    a = array.astype(np.float32)
    if modality == "CT":
        lo, hi = ct_window
    else:
        finite = a[np.isfinite(a)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    return np.clip((a - lo) / max(float(hi - lo), 1e-6), 0, 1)


class TileReader:
    """Reads the tiles of one case. Opens its image lazily, so it can be sent to worker processes.

    Args:
        tiles: The tile set.
        images: Image paths of the case (channel name → path); defaults to ``tiles.source``.
        modality: ``CT``, ``MR``, ``WSI``, ... (chooses the intensity normalisation of volumes).
        mpp_override: Microns per pixel of slides that lack it.
        ct_window: HU window for CT.
    """

    def __init__(
        self,
        tiles: TileSet,
        images: dict[str, Path] | None = None,
        modality: str | None = None,
        mpp_override: float | None = None,
        ct_window: tuple[float, float] = CT_WINDOW,
    ) -> None:
        self.tiles = tiles
        self.images = images or {"image": Path(tiles.source)}
        self.modality = modality
        self.mpp_override = mpp_override
        self.ct_window = ct_window
        self._slide: Slide | None = None
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tiles)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_slide"] = None  # slide handles and decoded volumes are not sent to workers
        state["_array"] = None
        return state

    def open(self) -> None:
        """Open the image (slides) or load and normalise the volume; reads call this themselves."""
        if self.tiles.kind == "slide":
            if self._slide is None:
                from medwss.io.slide import open_slide

                self._slide = open_slide(next(iter(self.images.values())), mpp=self.mpp_override)
        elif self._array is None:
            from medwss.io.resample import resample_to
            from medwss.io.volumes import load_volume

            vols = [load_volume(p, nan="fill") for p in self.images.values()]
            ref = vols[0]
            chans = [ref] + [resample_to(v, ref) for v in vols[1:]]
            arrays = [normalise_intensity(v.array, self.modality, self.ct_window) for v in chans]
            self._array = np.stack(arrays, axis=0)  # (C, I, J, K)

    def read(self, index: int) -> np.ndarray:
        """Tile `index` as float32 in [0, 1], channel-first; areas outside the image are 0 (white for slides)."""
        self.open()
        t = self.tiles
        if t.kind == "slide":
            assert self._slide is not None and t.mpp is not None
            x, y = t.coords[index]
            s = t.tile_size[0]
            rgb = self._slide.read_region_mpp((int(x), int(y)), (s, s), t.mpp)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
        assert self._array is not None
        i, j, k = (int(v) for v in t.coords[index])
        si, sj, sk = t.tile_size  # volumes: extent along (i, j, k); sk is 1 for axial tiles
        patch = _crop(self._array, (i, j, k), (si, sj, sk))  # (C, si, sj, sk)
        if t.kind == "axial2d":
            return patch[..., 0]
        if t.kind == "stack25d":
            return patch.transpose(0, 3, 1, 2).reshape(-1, si, sj)  # (C*D, si, sj)
        return patch

    def close(self) -> None:
        if self._slide is not None:
            self._slide.close()
            self._slide = None


def _crop(array: np.ndarray, start: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    """(C, I, J, K)[start : start + size], zero-padded where it leaves the array."""
    out = np.zeros((array.shape[0],) + tuple(size), np.float32)
    src, dst = [], []
    for s, n, dim in zip(start, size, array.shape[1:], strict=True):
        a, b = max(s, 0), min(s + n, dim)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[(slice(None), *dst)] = array[(slice(None), *src)]
    return out
