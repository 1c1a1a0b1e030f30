"""COIN's settings, apart from the torch code that uses them (``medwss coin --help`` stays light).

`ClassifierConfig` trains the normal/abnormal slice classifier of `medwss.counterfactual.classifier`;
`CoinConfig` the generator and discriminator of `medwss.counterfactual.train` (both modules
re-export their config). The shipped YAML files hold more: `ClassifierFile`
(configs/coin_classifier.yaml: the classifier settings, a ``slices:`` and a ``data:`` section) and
`CoinFile` (configs/coin.yaml: COIN settings and ``data:``), read by `read_classifier_file` and
`read_coin_file`; `SegmentConfig` and `BaselinesConfig` are the mask settings of ``coin segment``
and ``coin baselines``. ``medwss coin`` generates its flags from these classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from medwss.config import StrictConfig

if TYPE_CHECKING:
    from medwss.counterfactual.segment import MaskSettings
    from medwss.counterfactual.slices import SliceSpec


class ClassifierConfig(StrictConfig):
    """Classifier training settings (configs/coin_classifier.yaml)."""

    channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    """MONAI ResNet block widths (one basic block per stage)."""
    stem_stride: int = 2
    """Stride of the 3×3 stem (2: 64-px slices give 4×4 last-stage features)."""
    epochs: int = 8
    """Passes over the training slices."""
    batch_size: int = 32
    """Slices per step."""
    lr: float = 1e-3
    """Peak learning rate (one-cycle schedule, AdamW)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    augment: bool = True
    """Left–right flips, gain and Gaussian noise (`PRESETS["classifier"]`), on the device. The noise makes the
    classifier less sensitive to faint, image-wide perturbations, the cheapest (and wrong) way for a
    counterfactual generator to flip its decision."""
    seed: int = 0
    """Seed of the weights, the batch order and the augmentations."""
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU."""
    amp: bool = True
    """bfloat16 autocast on CUDA (no effect on the CPU)."""


class CoinConfig(StrictConfig):
    """COIN settings (configs/coin.yaml); paper: λ_adv 1, λ_kl 1–5, λ_rec 1, λ_tv 5e-5–0.05, Adam 2e-4, betas (0, 0.999)."""

    iterations: int = Field(500, ge=1)
    eval_every: int = Field(25, ge=1)
    """Iterations per round: a history row (losses averaged over the round) and a checkpoint each round."""
    batch_size: int = 16
    """Abnormal and normal slices drawn per step (each)."""
    lr: float = 5e-4
    """Adam learning rate of generator and discriminator."""
    betas: tuple[float, float] = (0.0, 0.999)
    """Adam betas."""
    lambda_adv: float = 1.0
    """Weight of the LSGAN generator loss (the counterfactual looks like a real normal slice)."""
    lambda_kl: float = 2.0
    """Weight of the KL term flipping the frozen classifier's decision to normal."""
    lambda_rec: float = 100.0
    """Weight of the L1 distance between the slice and its counterfactual (change as little as possible)."""
    lambda_cyc: float = 5.0
    """Weight of the cycle L1 terms (a counterfactual or a normal slice passes unchanged)."""
    lambda_tv: float = 1.0
    """Weight of the total variation of the change |x − x_cf|."""
    d_steps: int = 1
    """Discriminator updates per iteration."""
    g_steps: int = 1
    """Generator updates per iteration."""
    decision_threshold: float = 0.5
    """Classifier probability at which a training slice counts as abnormal (forms the two pools)."""
    gen_channels: tuple[int, ...] = (8, 16, 32, 64)
    """Generator U-Net widths per level."""
    gen_res_units: int = 1
    """Residual units per generator level."""
    smooth_sigma: float = 1.0
    """Standard deviation (pixels) of the Gaussian low-pass on the perturbation; 0: none."""
    disc_channels: tuple[int, ...] = (16, 32, 64)
    """Patch discriminator widths."""
    seed: int = 0
    """Seed of the weights and the batches."""
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the generator is returned on the CPU."""
    amp: bool = False
    """bfloat16 autocast on CUDA (no effect on the CPU); off by default: the L1 and TV terms of small
    perturbations are weighted by 100 and lose precision in bfloat16."""


class DataSettings(StrictConfig):
    """The ``data:`` section of a COIN training config: which cases to train on."""

    sites: tuple[str, ...] | None = None
    """Institutions (manifest ``site``) to use; None: all."""
    train_split: str = "train"
    """Split to train on (``all``: every case)."""


class SliceSettings(StrictConfig):
    """The ``slices:`` section of a classifier config: the fields of `SliceSpec` (flags override them)."""

    labels: str | dict[str, list[int]] = "kidney_tumour"
    """Label spec of the masks: a name (kidney_tumour, ct_phantom, lesion, ...) or {class: values};
    on the command line also 'kidney=2,3;tumour=4'."""
    lesion: str = "tumour"
    """Class of the label spec that makes a slice abnormal."""
    roi: str | None = "kidney"
    """Class to crop around; ``none`` or null: whole slices."""
    window: str | tuple[float, float] | None = "soft_tissue"
    """A CT window name (soft_tissue, abdomen, wide, ...), ``[low, high]`` (flag: ``--window=LOW,HIGH``),
    or ``auto``/null (per-volume 1st–99th percentiles)."""
    size: int = Field(64, ge=8)
    """Slice side in pixels."""
    margin: int = Field(6, ge=0)
    """Voxels around the organ box."""


class ClassifierFile(ClassifierConfig):
    """A ``train-classifier`` config (configs/coin_classifier.yaml): the classifier's settings, ``slices:``, ``data:``."""

    slices: SliceSettings = SliceSettings()
    """How volumes become slices (stored in classifier.pt, so later commands slice the same way)."""
    data: DataSettings = DataSettings()
    """Which cases to train on."""

    def parts(self, path: str | Path | None = None) -> tuple[ClassifierConfig, SliceSpec, DataSettings]:
        """The classifier settings, the slicing spec and the data selection.

        Raises:
            ConfigError: The ``slices:`` section names an unknown label spec, class or window (naming `path`).
        """
        from medwss.counterfactual.slices import SliceSpec
        from medwss.errors import ConfigError, InvalidDataError

        cfg = ClassifierConfig.model_validate(self.model_dump(exclude={"slices", "data"}))
        sl = self.slices
        window = sl.window
        if isinstance(window, str) and window.lower() in ("auto", "none"):
            window = None
        roi = None if sl.roi is None or sl.roi.lower() in ("", "none") else sl.roi
        try:
            spec = SliceSpec(sl.labels, sl.lesion, roi, window, sl.size, sl.margin)
        except InvalidDataError as exc:
            raise ConfigError(f"slices: {exc}", Path(path) if path else None) from exc
        return cfg, spec, self.data


class CoinFile(CoinConfig):
    """A ``coin train`` config (configs/coin.yaml): the COIN settings and a ``data:`` section."""

    data: DataSettings = DataSettings()
    """Which cases to train on."""

    def parts(self) -> tuple[CoinConfig, DataSettings]:
        return CoinConfig.model_validate(self.model_dump(exclude={"data"})), self.data


class MaskConfig(StrictConfig):
    """How ``segment`` and ``baselines`` turn maps into masks, and which cases they run on."""

    threshold: float = Field(0.25, ge=0, le=1)
    """Map threshold: pixels with map value >= this are foreground (paper: 0.25)."""
    opening: int = Field(0, ge=0)
    """Radius of a binary opening, pixels (0: none)."""
    closing: int = Field(0, ge=0)
    """Radius of a binary closing, pixels (0: none)."""
    largest: bool = False
    """Keep the largest connected component per slice."""
    scale: Literal["max", "range"] = "max"
    """Difference scaling: by each slice's maximum, or by 2 (the width of [-1, 1])."""
    split: str | None = None
    """Only the cases of this split (train, val, test); None: all."""
    sites: tuple[str, ...] | None = None
    """Only the cases of these institutions (manifest site), e.g. CS; None: all."""

    def settings(self) -> MaskSettings:
        from medwss.counterfactual.segment import MaskSettings

        return MaskSettings(self.threshold, self.opening, self.closing, self.largest, self.scale)


class SegmentConfig(MaskConfig):
    """``coin segment`` settings (``--config`` YAML)."""

    formats: list[Literal["nifti", "dicom-seg", "slicer"]] = Field(default_factory=lambda: ["nifti"])  # type: ignore[arg-type]
    """Mask outputs: nifti, slicer (label map + colour table), dicom-seg."""
    overlap: float = Field(0.25, ge=0, lt=1)
    """Sliding-window overlap."""


class BaselinesConfig(MaskConfig):
    """``coin baselines`` settings (``--config`` YAML)."""

    methods: list[str] = Field(default_factory=lambda: ["gradcam", "layercam", "scorecam", "rise", "occlusion"])
    """Attribution methods run under the same protocol."""
    sweep_split: str | None = None
    """Choose each method's threshold on the cases of this split (e.g. val); None: use threshold."""


def read_classifier_file(path: str | Path) -> tuple[ClassifierConfig, SliceSpec, DataSettings]:
    """Classifier settings, slicing spec and data selection of a classifier YAML (configs/coin_*classifier.yaml).

    Raises:
        ConfigError: Naming the file and every invalid key.
    """
    from medwss.config import load_config

    return load_config(path, ClassifierFile).parts(path)


def read_coin_file(path: str | Path) -> tuple[CoinConfig, DataSettings]:
    """COIN settings and data selection of a COIN YAML (configs/coin*.yaml).

    Raises:
        ConfigError: Naming the file and every invalid key.
    """
    from medwss.config import load_config

    return load_config(path, CoinFile).parts()
