"""Typed settings of the `medwss pseudo` commands (one model; each command reads the fields it needs)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medwss.config import StrictConfig

LABEL_PRESETS: dict[str, dict[int, tuple[int, str]]] = {
    "ct_phantom": {
        1: (1, "liver"),
        2: (2, "right_kidney"),
        3: (3, "left_kidney"),
        7: (4, "spleen"),
        4: (5, "kidney_tumor"),
    },
    "totalseg": {5: (1, "liver"), 1: (2, "spleen"), 2: (3, "right_kidney"), 3: (4, "left_kidney")},
    "binary": {1: (1, "foreground")},
}
"""Source label value → (pseudo-label class, name); other values become background."""


class PseudoConfig(StrictConfig):
    """Settings shared by the pseudo-label commands.

    Attributes:
        labels: A preset of `LABEL_PRESETS` mapping the manifest's mask values to classes.
        minor: Names of the classes reported as minor (recall).
        window: HU (or intensity) window used to normalise images.
        downsample: Integer in-plane downsampling of slices (1 = native grid).
        segmenter: Box segmenter (``box``, ``random_walker``, ``chan_vese``, ``otsu``, ``sam``, ``medsam``).
        checkpoint: Local SAM/MedSAM checkpoint.
        box_threshold, ring: Mask threshold and ignore ring (pixels) of box pseudo-labels.
        cam_source: Activation maps from point labels (intensity × closeness) or from a tag classifier.
        point_sigma: Spatial spread (native pixels) of point activation maps.
        cam_epochs, cam_width, cam_crop: Tag-classifier training for weight-free CAMs (crop side as a
            fraction of the slice for patch tags; None = whole-slice tags).
        cam_tau: Threshold of the plain CAM baseline (and the DHR/PAR/CPAL outputs).
        prior: DHR class prior, ``uniform`` or ``volume`` (organ share of a slice where the organ is
            visible, from the labelled ``val`` cases, else all non-test cases; background takes the rest).
        eps: Sinkhorn regularisation.
        foreground: Foreground prior of fusion (``body``, ``hu``, ``otsu``).
        tau: Fusion threshold; None = chosen by a sweep on the ``val`` split.
        band: Ignore band around tau.
        weak: Sparse-label kind for AGMM when the manifest has no scribble column.
        iterations: Training steps of AGMM and DuPL.
        confidence: Posterior below which AGMM/DuPL outputs abstain.
        contexts, top_k, alpha: CPAL context prototypes per class, neighbours, PAM weight.
        par_iter: PAR iterations.
        seed: Seed of every random step.
    """

    labels: Literal["ct_phantom", "totalseg", "binary"] = "ct_phantom"
    minor: tuple[str, ...] = ("kidney_tumor", "right_kidney", "left_kidney")
    window: tuple[float, float] = (-160.0, 240.0)
    downsample: int = Field(1, ge=1)
    segmenter: str = "random_walker"
    checkpoint: str | None = None
    box_threshold: float = Field(0.5, gt=0, lt=1)
    ring: int = Field(1, ge=0)
    cam_epochs: int = Field(15, ge=1)
    cam_source: Literal["points", "tags"] = "points"
    point_sigma: float = Field(8.0, gt=0)
    cam_width: int = Field(24, ge=4)
    cam_crop: float | None = Field(0.5, gt=0, le=1)
    cam_tau: float = Field(0.5, gt=0, lt=1)
    prior: Literal["uniform", "volume"] = "volume"
    eps: float = Field(0.01, gt=0)
    foreground: Literal["body", "hu", "otsu"] = "hu"
    tau: float | None = None
    band: float = Field(0.05, ge=0)
    weak: Literal["points", "scribbles", "blocks", "boxes"] = "scribbles"
    iterations: int = Field(150, ge=1)
    confidence: float = Field(0.6, ge=0, lt=1)
    contexts: int = Field(4, ge=1)
    top_k: int = Field(3, ge=1)
    alpha: float = Field(0.5, ge=0, le=1)
    par_iter: int = Field(10, ge=1)
    seed: int = 0

    def classes(self) -> list[str]:
        """Class names, background first."""
        preset = LABEL_PRESETS[self.labels]
        return ["background"] + [name for _, name in sorted(preset.values())]

    def minor_ids(self) -> list[int]:
        names = self.classes()
        return [names.index(n) for n in self.minor if n in names]
