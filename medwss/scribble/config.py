"""`ScribbleConfig`: input, supervision, size bounds and training settings of a scribble run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from medwss.config import StrictConfig
from medwss.data.weak import WEAK_KINDS
from medwss.errors import ConfigError
from medwss.seg.train import SegTrainConfig


def _weak_kind(kind: str) -> str:
    if kind not in WEAK_KINDS:
        raise ValueError(f"unknown weak label kind '{kind}': choose one of {', '.join(WEAK_KINDS)}")
    return kind


WeakKind = Annotated[str, AfterValidator(_weak_kind)]
"""A name in `medwss.data.weak.WEAK_KINDS` (validated; the list lives there only)."""
BoundsMode = Literal["none", "tag", "true", "box", "upper"]
SizePrior = tuple[float, float] | tuple[tuple[float, float], ...]
"""One (lower, upper) pair for every foreground class, or one pair per foreground class (classes 1..K-1)."""


class ScribbleConfig(StrictConfig):
    """One scribble-supervised (or fully supervised reference) training run, stored as given.

    Input: ``sequences`` are the manifest's ``image_<name>`` channels in network order (``image``
    for a single-image manifest, which also answers to ``t2``); empty (the default) means every
    image channel of the first training case, in manifest column order, fixed in the model file at
    training time. Every case goes onto a ``crop_mm`` × ``crop_mm`` axial grid at ``spacing_mm``
    built on the canonical grid of the reference channel (``reference``, default the first of
    ``sequences``), centred on the zone map ``meta_zones`` when ``use_zones`` and present, else on
    the volume centre; ``crop_mm: null`` takes the whole field of view (a square on its larger
    in-plane side). In 2D, ``slice_size`` resizes every axial slice of that grid to ``slice_size`` ×
    ``slice_size`` through `medwss.data.slicer` (None keeps the grid's size).

    Classes: ``num_classes`` counts the background: 2 for a binary lesion (mask values > 0 are the
    lesion), K for K − 1 structures (mask values must be 0..K−1); ``class_names`` are for reports.

    Supervision: ``weak`` trains on weak labels — the manifest's ``scribble`` file when
    ``use_scribble_column`` and present (−1 = unlabelled, else the class), else generated from
    ``mask`` by ``weak_kind`` (one of `medwss.data.weak.WEAK_KINDS`) with ``weak_options`` and
    ``weak_seed``; ``full`` on the masks. Bounds (``bounds``, per foreground class): ``tag``
    (``size_prior`` in mm² per slice for 2D or mm³ per volume for 3D when the class is marked, one
    pair for all classes or one per class; [0, 0] when the image is known empty), ``true`` (true
    size ± ``margin``), ``box`` (bounding boxes of each class in the mask: ``box_fill`` × box area
    to box area), ``upper`` (tag, upper side only) or ``none``. Known-empty images: every image of
    a case whose label is 0 and, with ``negative_slices="unmarked"``, every slice without a
    foreground mark; with ``unmarked``, a class not marked on an image is also taken as absent
    from it (bound [0, 0]), else its size is left unbounded.

    Method: ``standard`` trains one network with the configured loss (partial CE, size penalty,
    negative CE); ``dmpls`` is the dual-branch network with dynamically mixed pseudo labels of Luo
    et al. (MICCAI 2022, `medwss.scribble.dmpls`): partial CE on both branches plus
    ``pseudo_weight`` × Dice to the argmax of a random convex mix of the two branches (plus the
    size and negative terms when their weights are set).

    Training: the remaining keys are those of `medwss.seg.train.SegTrainConfig`; the size term
    ramps in linearly over the first ``size_warmup`` epochs (the cross-entropy locates the lesion first).
    Images holding a foreground mark are repeated ``oversample`` times per epoch (lesions cover
    well under 1% of the pixels). Validation (epoch selection) uses the full masks of the ``val``
    cases: in 2D only the slices that hold foreground, so that predicting nothing scores 0.
    """

    sequences: tuple[str, ...] = ()
    reference: str | None = None
    crop_mm: float | None = 56.0
    spacing_mm: float | None = 1.0
    slice_size: int | None = None
    use_zones: bool = True
    num_classes: int = 2
    class_names: tuple[str, ...] = ()
    supervision: Literal["weak", "full"] = "weak"
    weak_kind: WeakKind = "circle"
    weak_options: dict[str, float | int | str] = {}
    weak_seed: int = 0
    use_scribble_column: bool = True
    bounds: BoundsMode = "tag"
    size_prior: SizePrior = (10.0, 150.0)
    margin: float = 0.1
    box_fill: float = 0.5
    negative_slices: Literal["case", "unmarked"] = "case"
    size_warmup: int = 0
    oversample: int = 3
    method: Literal["standard", "dmpls"] = "standard"
    pseudo_weight: float = 0.5
    # network and optimisation (see SegTrainConfig)
    network: Literal["unet", "dynunet"] = "unet"
    spatial_dims: Literal[2, 3] = 2
    channels: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.0
    loss: Literal["partial_ce", "ce_dice"] = "partial_ce"
    size_weight: float = 0.01
    size_per_slice: bool = False
    negative_weight: float = 0.1
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5
    augment: bool = True
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _check(self) -> ScribbleConfig:
        k = self.num_classes
        if k < 2:
            raise ValueError(f"num_classes must be at least 2 (background + one class), got {k}")
        if self.class_names and len(self.class_names) != k:
            raise ValueError(f"class_names has {len(self.class_names)} names for num_classes={k}")
        if self.size_prior and isinstance(self.size_prior[0], tuple) and len(self.size_prior) != k - 1:
            raise ValueError(f"size_prior has {len(self.size_prior)} pairs for {k - 1} foreground class(es)")
        if self.slice_size is not None and self.slice_size < 8:
            raise ValueError(f"slice_size must be at least 8 pixels, got {self.slice_size}")
        if self.reference is not None and self.sequences and self.reference not in self.sequences:
            raise ValueError(f"reference '{self.reference}' is not one of sequences {list(self.sequences)}")
        return self

    def priors(self) -> list[tuple[float, float]]:
        """`size_prior` as one (lower, upper) pair per foreground class."""
        if isinstance(self.size_prior[0], tuple):
            return [(float(a), float(b)) for a, b in self.size_prior]  # type: ignore[misc]
        lo, hi = self.size_prior  # type: ignore[misc]
        return [(float(lo), float(hi))] * (self.num_classes - 1)

    def names(self) -> list[str]:
        """Class names (``class_names``, else ``background``, ``class_1``, ...; ``lesion`` when binary)."""
        if self.class_names:
            return list(self.class_names)
        return (
            ["background", "lesion"]
            if self.num_classes == 2
            else ["background"] + [f"class_{c}" for c in range(1, self.num_classes)]
        )

    def with_sequences(self, channels: Sequence[str]) -> ScribbleConfig:
        """The config with `sequences` filled in (when empty) from a case's channel names."""
        if self.sequences:
            return self
        if not channels:
            raise ConfigError("sequences is empty and the case has no image channel")
        return self.model_copy(update={"sequences": tuple(channels)})

    def seg_config(self) -> SegTrainConfig:
        """The trainer's config: every key the two configs share, plus the channels and classes.

        Raises:
            ConfigError: `sequences` is still empty (see `with_sequences`).
        """
        if not self.sequences:
            raise ConfigError("sequences is empty: name the image channels, or resolve them from a case first")
        shared = {k: getattr(self, k) for k in SegTrainConfig.model_fields if k in type(self).model_fields}
        return SegTrainConfig(**shared, in_channels=len(self.sequences))
