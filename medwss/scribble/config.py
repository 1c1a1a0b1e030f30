"""`ScribbleConfig`: input, supervision, size bounds and training settings of a scribble run."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator

from medwss.config import StrictConfig
from medwss.data.weak import WEAK_KINDS
from medwss.seg.train import SegTrainConfig


def _weak_kind(kind: str) -> str:
    if kind not in WEAK_KINDS:
        raise ValueError(f"unknown weak label kind '{kind}': choose one of {', '.join(WEAK_KINDS)}")
    return kind


WeakKind = Annotated[str, AfterValidator(_weak_kind)]
"""A name in `medwss.data.weak.WEAK_KINDS` (validated; the list lives there only)."""
BoundsMode = Literal["none", "tag", "true", "box", "upper"]


class ScribbleConfig(StrictConfig):
    """One scribble-supervised (or fully supervised reference) training run, stored as given.

    Input: ``sequences`` are the manifest's ``image_<name>`` channels in network order (``image`` or
    ``t2`` for a single-image manifest); every case goes onto a ``crop_mm`` × ``crop_mm`` axial grid at
    ``spacing_mm`` built on the canonical grid of the reference channel (``t2`` when present, else the
    first of ``sequences``), centred on the zone map ``meta_zones`` when ``use_zones`` and present, else
    on the volume centre.

    Supervision: ``weak`` trains on weak labels — the manifest's ``scribble`` file when
    ``use_scribble_column`` and present, else generated from ``mask`` by ``weak_kind`` (one of
    `medwss.data.weak.WEAK_KINDS`) with ``weak_options`` and ``weak_seed``; ``full`` on the masks. Bounds (``bounds``): ``tag``
    (``size_prior`` in mm² per slice for 2D or mm³ per volume for 3D when a lesion is marked,
    [0, 0] when the image is known empty), ``true`` (true size ± ``margin``), ``box``
    (bounding boxes of the mask: ``box_fill`` × box area to box area), ``upper`` (tag, upper side
    only) or ``none``. Known-empty images: every image of a case whose label is 0 and, with
    ``negative_slices="unmarked"``, every slice without a foreground mark.

    Training: the remaining keys are those of `medwss.seg.train.SegTrainConfig`; the size term
    ramps in linearly over the first ``size_warmup`` epochs (the cross-entropy locates the lesion first).
    Images holding a foreground mark (a lesion slice) are repeated ``oversample`` times per epoch
    (lesions cover well under 1% of the pixels). Validation (epoch selection) uses the full masks of
    the ``val`` cases: in 2D only the slices that hold a lesion, so that predicting nothing scores 0.
    """

    sequences: tuple[str, ...] = ("t2", "adc", "hbv")
    crop_mm: float = 56.0
    spacing_mm: float | None = 1.0
    use_zones: bool = True
    supervision: Literal["weak", "full"] = "weak"
    weak_kind: WeakKind = "circle"
    weak_options: dict[str, float | int | str] = {}
    weak_seed: int = 0
    use_scribble_column: bool = True
    bounds: BoundsMode = "tag"
    size_prior: tuple[float, float] = (10.0, 150.0)
    margin: float = 0.1
    box_fill: float = 0.5
    negative_slices: Literal["case", "unmarked"] = "case"
    size_warmup: int = 0
    oversample: int = 3
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

    def seg_config(self) -> SegTrainConfig:
        """The trainer's config: every key the two configs share, plus the channels and two classes."""
        shared = {k: getattr(self, k) for k in SegTrainConfig.model_fields if k in type(self).model_fields}
        return SegTrainConfig(**shared, in_channels=len(self.sequences), num_classes=2)
