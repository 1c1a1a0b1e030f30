"""`ScribbleConfig`: input, supervision, size bounds and training settings of a scribble run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from medwss.config import StrictConfig
from medwss.errors import ConfigError
from medwss.seg.config import SegTrainConfig, SegTrainSettings


def _weak_kind(kind: str) -> str:
    from medwss.data.weak import WEAK_KINDS  # numpy and scipy: only when a config is validated

    if kind not in WEAK_KINDS:
        raise ValueError(f"unknown weak label kind '{kind}': choose one of {', '.join(WEAK_KINDS)}")
    return kind


WeakKind = Annotated[str, AfterValidator(_weak_kind)]
"""A name in `medwss.data.weak.WEAK_KINDS` (validated; the list lives there only)."""
BoundsMode = Literal["none", "tag", "true", "box", "upper"]
SizePrior = tuple[float, float] | tuple[tuple[float, float], ...]
"""One (lower, upper) pair for every foreground class, or one pair per foreground class (classes 1..K-1)."""


class ScribbleConfig(SegTrainSettings):
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
    size and negative terms when their weights are set). ``self_training`` > 0 adds rounds of
    self-training (`medwss.scribble.selftrain`, 2D standard only): round n trains on the confident
    argmax (top softmax ≥ ``pseudo_threshold``, each class's largest component) of round n − 1's
    model on the training slices plus the scribbles, with ``pseudo_loss``; round 0 is this config
    with ``self_training: 0`` (in ``round_0/``), or ``pseudo_model`` when given.

    Training: the remaining keys are those of `medwss.seg.config.SegTrainSettings` (the class
    derives from it; ``channels``, ``size_weight`` and ``negative_weight`` have other defaults here); the size term
    ramps in linearly over the first ``size_warmup`` epochs (the cross-entropy locates the lesion first).
    Images holding a foreground mark are repeated ``oversample`` times per epoch (lesions cover
    well under 1% of the pixels). Validation (epoch selection) uses the full masks of the ``val``
    cases: in 2D only the slices that hold foreground, so that predicting nothing scores 0.
    """

    sequences: tuple[str, ...] = ()
    """Image channels (the manifest's ``image_<name>`` columns) in network order; empty: every channel of the first training case."""
    reference: str | None = None
    """Channel whose canonical grid the crop is built on (None: the first of `sequences`)."""
    crop_mm: float | None = 56.0
    """Side of the square axial crop in mm (None: the whole field of view)."""
    spacing_mm: float | None = 1.0
    """In-plane spacing of the crop grid in mm (None: keep the stored spacing)."""
    slice_size: int | None = None
    """2D: resize every axial slice to this many pixels square (None: keep the crop grid's size)."""
    use_zones: bool = True
    """Centre the crop on the case's zone map (``meta_zones``) when it has one, else on the volume centre."""
    class_names: tuple[str, ...] = ()
    """Names of the classes for reports (empty: background, lesion or class_1, ...)."""
    supervision: Literal["weak", "full"] = "weak"
    """Train on weak labels or on the full masks."""
    weak_kind: WeakKind = "circle"
    """Weak labels generated from the mask when a case has no scribble file (a kind of medwss.data.weak.WEAK_KINDS: circle, random_disk, centroid_disk, skeleton, point, block, box)."""
    weak_options: dict[str, float | int | str] = {}
    """Options of the weak-label generator (``{radius_fraction: 0.5}``)."""
    weak_seed: int = 0
    """Seed of the generated weak labels."""
    use_scribble_column: bool = True
    """Use the manifest's ``scribble`` file when a case has one (−1 = unlabelled)."""
    bounds: BoundsMode = "tag"
    """Size bounds per foreground class: tag (size_prior), true (true size ± margin), box, upper (tag, upper side) or none."""
    size_prior: SizePrior = (10.0, 150.0)
    """Size bounds of a marked class for bounds tag/upper: one (lower, upper) pair, or one per foreground class; mm² per slice (2D) or mm³ per volume (3D)."""
    margin: float = 0.1
    """bounds true: relative margin around the true size."""
    box_fill: float = 0.5
    """bounds box: lower bound as this fraction of the bounding-box area."""
    negative_slices: Literal["case", "unmarked"] = "case"
    """Known-empty images: those of label-0 cases (case), or also every slice without a foreground mark (unmarked)."""
    oversample: int = 3
    """Times an image holding a foreground mark is repeated per epoch."""
    method: Literal["standard", "dmpls"] = "standard"
    """One network with the configured loss (standard), or the dual-branch network with mixed pseudo labels (dmpls)."""
    pseudo_weight: float = 0.5
    """dmpls: weight of the Dice term to the mixed pseudo label."""
    self_training: int = Field(0, ge=0)
    """Self-training rounds after the first training (0: off; 2D, method standard; `medwss.scribble.selftrain`)."""
    pseudo_threshold: float = Field(0.9, ge=0.0, le=1.0)
    """Self-training: a pixel gets the previous model's argmax as label when its top softmax is at least this."""
    pseudo_loss: Literal["partial_ce", "ce_dice"] = "ce_dice"
    """Self-training: the loss of the rounds on the pseudo labels (the first training uses ``loss``)."""
    pseudo_model: str | None = None
    """Self-training: a trained model.pt giving the first round's labels (None: train it with this config, self_training 0)."""
    # the network and optimisation keys are SegTrainSettings'; these defaults differ from its own
    channels: tuple[int, ...] = (16, 32, 64)
    """Feature channels per resolution level of the network."""
    size_weight: float = 0.01
    """Weight of the size-constraint penalty (0: off)."""
    negative_weight: float = 0.1
    """Weight of the cross-entropy to background on images known to hold no foreground (0: off)."""

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
        if self.self_training and (self.spatial_dims != 2 or self.method != "standard"):
            raise ValueError("self_training needs spatial_dims 2 and method standard")
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


class ScribbleTrainJob(ScribbleConfig):
    """`medwss scribble train`: one `ScribbleConfig` run, or an ensemble of them, on some sites.

    `run_config` is the `ScribbleConfig` the members train with (``ensemble`` and ``sites`` are not
    part of it: they choose how many models and which cases, not how one is trained).
    """

    ensemble: int = Field(1, ge=1)
    """Train K members (seeds seed..seed+K-1) into member_<i>/ (1: one model.pt)."""
    sites: list[str] | None = None
    """Sites whose train and val cases are used (None: every site)."""

    def run_config(self) -> ScribbleConfig:
        """The training config of every member, without the job's own keys."""
        return ScribbleConfig.model_validate(self.model_dump(exclude={"ensemble", "sites"}))


class ScribbleMakeConfig(StrictConfig):
    """`medwss scribble make`: which weak labels are simulated from the manifest's masks."""

    kind: WeakKind = "circle"
    """Weak-label kind (medwss.data.weak.WEAK_KINDS: circle, random_disk, centroid_disk, skeleton, point, block, box)."""
    seed: int = 0
    """Seed of the marks (the same seed gives the same marks)."""
    background: bool = True
    """Also draw background marks."""
    options: dict[str, Any] = {}
    """Generator options (``{arc: 0.5}``, ``{radius: 3}``); ``--option KEY=VALUE`` adds one."""


class ScribblePredictConfig(StrictConfig):
    """`medwss scribble predict`: which cases, how the network is applied, what is written."""

    split: str | None = None
    """Only cases of this split (None: all)."""
    sites: list[str] | None = None
    """Only cases of these sites (None: all)."""
    modality: str | None = None
    """Modality of the -i cases (CT, MR, ...; None: from the files)."""
    overlap: float = Field(0.25, ge=0, lt=1)
    """Sliding-window overlap of 3D models."""
    device: str = "auto"
    """Where the network runs: ``auto``, ``cpu``, ``cuda``, ..."""
    formats: list[Literal["nifti", "dicom-seg", "slicer"]] = ["nifti"]
    """Outputs: nifti probability map (always), slicer label map + colour table, dicom-seg."""
    largest_component: Literal["none", "volume", "slice"] = "none"
    """K-class models: keep only each structure's largest connected component, in 3D (volume) or per
    slice; none keeps every component (binary lesion maps are never post-processed)."""


class ShiftConfig(StrictConfig):
    """`medwss scribble shift`: train on some sites, compare in- vs out-of-domain and single vs ensemble."""

    train_sites: list[str]
    """Sites trained on (the others are out of domain)."""
    settings: dict[str, str]
    """Named configs compared: ``{name: CONFIG.yaml}`` (each a `ScribbleConfig`); ``--setting NAME=CONFIG.yaml`` adds one."""
    ensemble: int = Field(3, ge=1)
    """Members per setting."""
    epochs: int | None = Field(None, ge=1)
    """Override every setting's epochs (None: each config's own)."""
