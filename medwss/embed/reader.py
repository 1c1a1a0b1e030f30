"""`TileReader`: the pixels of a `TileSet`'s tiles as float tensors in [0, 1], channel-first.

Slides give (3, S, S) RGB tiles read at the tile set's mpp. Volumes are normalised once per case
with `medwss.transforms.intensity.normalise` (CT: a Hounsfield window, ``abdomen`` by default; MR
and others: 1st–99th percentile), multi-channel cases resampled onto the first channel's grid, and
the result put on the canonical RAS+ grid the tile coordinates refer to (`TileSet.orientation`);
they give (C, S, S) axial tiles, (C·D, S, S) 2.5D stacks (the D slices of each channel as
channels) or (C, S, S, D) 3D patches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medwss.embed.tiles import TileSet
from medwss.errors import InvalidDataError
from medwss.io.slide import Slide
from medwss.transforms.intensity import Window, normalise


class TileReader:
    """Reads the tiles of one case. Opens its image lazily, so it can be sent to worker processes.

    Args:
        tiles: The tile set.
        images: Image paths of the case (channel name → path); defaults to ``tiles.source``.
        modality: ``CT``, ``MR``, ``WSI``, ... (chooses the intensity normalisation of volumes).
        mpp_override: Microns per pixel of slides that lack it.
        ct_window: HU window for CT: ``(low, high)`` or a name of `medwss.transforms.intensity.CT_WINDOWS`.
        nan: Volumes with NaN or infinite voxels: ``"raise"`` (default) or ``"fill"`` with the minimum.
    """

    def __init__(
        self,
        tiles: TileSet,
        images: dict[str, Path] | None = None,
        modality: str | None = None,
        mpp_override: float | None = None,
        ct_window: Window = "abdomen",
        nan: str = "raise",
    ) -> None:
        self.tiles = tiles
        self.images = images or {"image": Path(tiles.source)}
        self.modality = modality
        self.mpp_override = mpp_override
        self.ct_window = ct_window
        self.nan = nan  # NaN/inf voxels: "raise" (InvalidDataError) or "fill" (see medwss.io.volumes.load_volume)
        self._slide: Slide | None = None
        self._stain: Callable[[np.ndarray], np.ndarray] | None = None  # stain normaliser (tile attr ``stain_norm``)
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tiles)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_slide"] = None  # slide handles and decoded volumes are not sent to workers
        state["_array"] = None
        return state

    def open(self) -> None:
        """Open the image (slides) or load, normalise and canonicalise the volume; reads call this themselves.

        Raises:
            InvalidDataError: The tile set records another source grid than the image's.
        """
        if self.tiles.kind == "slide":
            if self._slide is None:
                from medwss.io.slide import open_slide

                chosen = str(self.tiles.attrs.get("slide_channels") or "")  # multiplex slides: the tiled channels
                self._slide = open_slide(
                    next(iter(self.images.values())),
                    mpp=self.mpp_override,
                    channels=chosen.split(",") if chosen else None,
                )
                if self.tiles.attrs.get("stain_norm") == "macenko":
                    from medwss.transforms.stain_norm import MacenkoNormalizer

                    self._stain = MacenkoNormalizer()
        elif self._array is None:
            from medwss.data.orientation import orientation_of
            from medwss.io.resample import resample_to
            from medwss.io.volumes import load_volume

            vols = [load_volume(p, nan=self.nan) for p in self.images.values()]  # type: ignore[arg-type]
            ref = vols[0]
            orient = orientation_of(ref)
            expected = self.tiles.orientation
            if expected is not None and (
                expected.shape != orient.shape or not np.array_equal(expected.ornt, orient.ornt)
            ):
                raise InvalidDataError(
                    f"the tiles were made on a {expected.codes} grid of shape {expected.shape}, the image is "
                    f"{orient.codes} of shape {orient.shape}; tile it again",
                    ref.path,
                )
            chans = [ref] + [resample_to(v, ref) for v in vols[1:]]
            window = self.ct_window if self.modality == "CT" else None  # None: percentiles
            arrays = [orient.to_canonical(normalise(v.array, window=window)) for v in chans]
            self._array = np.stack(arrays, axis=0)  # (C, I, J, K) on the canonical grid

    def read(self, index: int) -> np.ndarray:
        """Tile `index` as float32 in [0, 1], channel-first; areas outside the image are 0 (white for slides)."""
        self.open()
        t = self.tiles
        if t.kind == "slide":
            assert self._slide is not None and t.mpp is not None
            x, y = t.coords[index]
            s = t.tile_size[0]
            rgb = self._slide.read_region_mpp((int(x), int(y)), (s, s), t.mpp)
            if self._stain is not None:
                rgb = self._stain(rgb)
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
