"""The configs of `medwss tile` and `medwss embed` (no numpy or torch import: the CLI builds flags from them).

`TissueConfig` (the ``tissue:`` section of configs/tile.yaml, `medwss.embed.tissue.detect_tissue`),
`TileConfig` (`medwss.embed.tiling_job.tile_manifest`) and `EmbedConfig`
(`medwss.embed.engine`, `medwss.embed.job.embed_manifest`); the modules that use them re-export them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from medwss.config import StrictConfig


class TissueConfig(StrictConfig):
    """How `detect_tissue` finds tissue on a slide thumbnail (the ``tissue:`` section of configs/tile.yaml)."""

    thumbnail_max: int = Field(default=4096, ge=64)
    """Longest side of the thumbnail the mask is computed on, in pixels."""
    mask_mpp: float | None = Field(default=4.0, gt=0)
    """Wanted µm per mask pixel (smaller thumbnails for small slides); None: always `thumbnail_max`."""
    saturation: Annotated[float, Field(ge=0, le=1)] | Literal["otsu"] = "otsu"
    """Saturation threshold in [0, 1], or ``otsu`` for Otsu's threshold on the thumbnail's saturation."""
    min_saturation: float = Field(default=0.05, ge=0, le=1)
    """Floor under Otsu's threshold, so that a blank slide does not split its noise."""
    max_brightness: float = Field(default=0.92, gt=0, le=1)
    """Pixels whose mean RGB (/255) is above this are glass."""
    min_brightness: float = Field(default=0.15, ge=0, lt=1)
    """Pixels whose brightest channel (/255) is below this are ink, debris or the slide's edge."""
    reject_pen: bool = True
    """Drop pen ink: saturated pixels whose hue lies in `pen_hue`."""
    pen_hue: tuple[float, float] = (70.0, 240.0)
    """Hue range of pen ink in degrees (green 120, cyan 180, blue 220; H&E is 270-360)."""
    pen_min_saturation: float = Field(default=0.08, ge=0, le=1)
    """Minimum saturation for the hue of a pixel to count."""
    pen_min_area_um2: float = Field(default=2500.0, ge=0)
    """Ink-coloured specks smaller than this (marking dye) become tissue again when tissue surrounds them, µm²."""
    pen_margin_um: float = Field(default=8.0, ge=0)
    """Pen ink is grown by this much, to drop its blurred fringe."""
    close_um: float = Field(default=24.0, ge=0)
    """Radius of the morphological closing that bridges small gaps, µm."""
    open_um: float = Field(default=4.0, ge=0)
    """Radius of the opening that removes specks and thin threads, µm."""
    fill_holes: bool = True
    """Fill holes inside tissue (lumens, fat, tears)."""
    max_hole_um2: float | None = Field(default=None, gt=0)
    """Only fill holes smaller than this, µm²; None fills every hole."""
    min_area_um2: float = Field(default=20000.0, ge=0)
    """Drop tissue pieces smaller than this, µm²."""
    min_area_px: int = Field(default=4, ge=0)
    """And smaller than this many mask pixels, whatever the scale."""
    mode: Literal["auto", "brightfield", "fluorescence"] = "auto"
    """``auto``: fluorescence detection for multiplex slides (QPTIFF, OME ``CYX``), brightfield otherwise."""
    nuclear_channel: str | int | None = None
    """Fluorescence: the channel thresholded (name or index); None: the first named like DAPI/Hoechst/DNA, else 0."""


class TileConfig(StrictConfig):
    """What `medwss tile` / `tile_manifest` do (configs/tile.yaml)."""

    tile_size: int | None = Field(default=None, ge=1)
    """Tile side: pixels at `mpp` for slides (None: 224), voxels in-plane for volumes (None: 32)."""
    mpp: float = Field(default=0.5, gt=0)
    """Slides: target microns per pixel."""
    mag: float | None = Field(default=None, gt=0)
    """Slides: target magnification instead of `mpp` (20 → the slide's level-0 mpp × objective power / 20)."""
    overlap: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of a tile shared with its neighbour (volumes: in-plane, and along k for 3D patches)."""
    min_tissue: float = Field(default=0.25, ge=0, le=1)
    """Keep tiles with at least this fraction of tissue (slides) or body (volumes)."""
    mpp_override: float | None = Field(default=None, gt=0)
    """Slides: level-0 microns per pixel for files without it (or with a wrong value)."""
    tissue: TissueConfig = Field(default_factory=TissueConfig)
    """Slides: tissue detection settings."""
    mode: Literal["axial2d", "stack25d", "patch3d"] = "axial2d"
    """Volumes: axial slices, 2.5D stacks of `depth` slices, or 3D patches."""
    depth: int = Field(default=3, ge=1)
    """Volumes: slices per 2.5D stack."""
    tile_mm: float | None = Field(default=None, gt=0)
    """Volumes: patch side in mm instead of `tile_size` voxels."""
    roi_labels: list[int] | None = None
    """Volumes: keep only tiles inside the bounding box of these labels of the case's `mask` (organ ROI)."""
    roi_margin_mm: float = Field(default=10.0, ge=0)
    """Volumes: margin around the organ ROI, mm."""
    qa: bool = True
    """Write the QA images."""
    nan: Literal["raise", "fill"] = "raise"
    """Volumes with NaN or infinite voxels: fail the case (default) or fill them with the minimum."""
    force_mpp: bool = False
    """Slides: accept a slide or target mpp outside 0.05–100 µm/px, or more than 8x upsampling."""
    channels: list[str] | None = None
    """Multiplex slides (QPTIFF, OME CYX): 1–3 channels (names or indices) read as the tile's RGB planes; None: the first 3."""
    stain_norm: Literal["none", "macenko"] = "none"
    """Slides: stain normalisation of every tile when it is read (recorded in the tile file; `medwss.transforms.stain_norm`)."""
    tissue_geojson: str | None = None
    """Slides: tissue from GeoJSON instead of detection: a file, or a folder of ``<case_id>_tissue.geojson``."""


class EmbedConfig(StrictConfig):
    """How `medwss embed` runs (configs/embed.yaml)."""

    encoder: str = "resnet18"
    """Encoder name (see `medwss embed --list`), or ``torchscript:PATH``."""
    weights: str | None = None
    """Local weights file to load (.pth/.bin with weights_only, or .safetensors); strict for uni etc. None: random init from `seed`."""
    encoder_options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the encoder (`create_encoder`), e.g. ``{input_size: 224}`` or ``{block: monai}``
    for ``vit``; recorded in every bag's ``encoder_init``."""
    batch_size: int = Field(64, ge=1)
    """Tiles per batch."""
    workers: int = Field(2, ge=0)
    """Threads reading tiles (0: read in the producer thread)."""
    prefetch: int = Field(4, ge=1)
    """Batches read ahead of the encoder."""
    dtype: Literal["float16", "float32"] = "float16"
    """Storage type of the features."""
    tokens: bool = False
    """Also store the spatial token maps."""
    amp: bool = True
    """Mixed precision (autocast) on CUDA; no effect on the CPU."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    mpp_override: float | None = None
    """Microns per pixel for slides that lack it."""
    ct_window: tuple[float, float] | str = "abdomen"
    """CT intensity window: a name of medwss.transforms.intensity.CT_WINDOWS (abdomen, ...) or low,high in HU."""
    seed: int = 0
    """Seed of the random initialisation of encoders without weights (recorded in every bag)."""
    nan: Literal["raise", "fill"] = "raise"
    """Volumes with NaN/inf voxels: fail the case, or fill them with the minimum."""


__all__ = ["EmbedConfig", "TileConfig", "TissueConfig"]
