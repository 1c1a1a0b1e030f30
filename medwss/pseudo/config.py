"""Typed settings of the `medwss pseudo` commands (one model; each command reads the fields it needs)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medwss.config import StrictConfig
from medwss.data.labels import LabelSpec, label_spec
from medwss.data.weak import WEAK_KINDS
from medwss.errors import MedwssError
from medwss.transforms.intensity import resolve_window


class PseudoConfig(StrictConfig):
    """Settings shared by the pseudo-label commands.

    Attributes:
        labels: The label spec of the manifest's masks: a name of `medwss.data.labels.LABEL_SPECS`
            (``ct_phantom``, ``totalseg``, ``binary``, ...) or a ``{class name: source values}`` mapping.
        minor: Names of the classes reported as minor (recall).
        window: HU (or intensity) window used to normalise images: a name of
            `medwss.transforms.intensity.CT_WINDOWS` or ``(low, high)``.
        downsample: In-plane downsampling of the axial slices (1 = native grid; slices are resized
            to ``ceil(side / downsample)`` by the shared slicer).
        slice_size: Side every axial slice is resized to (the whole field of view, aspect not kept);
            overrides `downsample`. Needed where cases differ in size (ACDC), since the trained
            methods stack slices into one batch.
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
        weak: Sparse-label kind for AGMM when the manifest has no scribble column (a kind of
            `medwss.data.weak.make_weak_label`; ``point`` draws 3 clicks per component).
        iterations: Training steps of AGMM and DuPL.
        confidence: Posterior below which AGMM/DuPL outputs abstain.
        contexts, top_k, alpha: CPAL context prototypes per class, neighbours, PAM weight.
        par_iter: PAR iterations.
        seed: Seed of every random step.
        device: Where the tag classifier, AGMM and DuPL train (``auto``: the GPU when there is one).
        amp: Mixed precision for that training (CUDA only).
    """

    labels: str | dict[str, list[int] | int] = "ct_phantom"
    minor: tuple[str, ...] = ("kidney_tumor", "right_kidney", "left_kidney")
    window: str | tuple[float, float] = "soft_tissue"
    downsample: int = Field(1, ge=1)
    slice_size: int | None = Field(None, ge=8)
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
    weak: str = "skeleton"
    iterations: int = Field(150, ge=1)
    confidence: float = Field(0.6, ge=0, lt=1)
    contexts: int = Field(4, ge=1)
    top_k: int = Field(3, ge=1)
    alpha: float = Field(0.5, ge=0, le=1)
    par_iter: int = Field(10, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: bool = False

    @field_validator("labels")
    @classmethod
    def _known_spec(cls, v: str | dict[str, list[int] | int]) -> str | dict[str, list[int] | int]:
        try:
            label_spec(v)  # unknown names and overlapping values are errors here, not mid-run
        except MedwssError as exc:
            raise ValueError(exc.message) from None
        return v

    @field_validator("window")
    @classmethod
    def _known_window(cls, v: str | tuple[float, float]) -> str | tuple[float, float]:
        try:
            w = resolve_window(v)
        except MedwssError as exc:
            raise ValueError(exc.message) from None
        if w is None:
            raise ValueError("give a named CT window or (low, high); percentile windows are not used here")
        return v

    @field_validator("weak")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in WEAK_KINDS:
            raise ValueError(f"unknown weak label kind '{v}': choose one of {', '.join(WEAK_KINDS)}")
        return v

    def spec(self) -> LabelSpec:
        """The `LabelSpec` of `labels`."""
        return label_spec(self.labels)

    def window_range(self) -> tuple[float, float]:
        """``(low, high)`` of `window`."""
        w = resolve_window(self.window)
        assert w is not None  # checked by the validator
        return w

    def classes(self) -> list[str]:
        """Class names, background first (from the label spec)."""
        return self.spec().names

    def minor_ids(self) -> list[int]:
        names = self.classes()
        return [names.index(n) for n in self.minor if n in names]
