"""Augmentation pipelines: MONAI `Compose` pipelines of dictionary transforms, run on the tensors' device.

One definition serves the CPU and the GPU: `augment_pipeline` turns an `AugmentConfig` into a
pipeline whose first step puts every key on the device (when one is named; otherwise the tensors
stay where they are), and whose random transforms then run there. `augment_batch` applies it to
each sample of a batch that is already on the device and stacks the results again (MONAI's
dictionary transforms take one channel-first sample at a time).

Keys have three roles. Images get every transform. Label maps (`IGNORE` = -1 where unlabelled)
follow the spatial ones with nearest-neighbour interpolation; around an affine they are shifted
by +1 and back, so the zeros padded in at the borders come out as `IGNORE`. Masks (e.g. the
"valid" map of padded batches) follow with nearest-neighbour interpolation and zero padding.

Random draws come from each transform's NumPy random state, so a pipeline seeded with
`set_random_state` (or `augment_batch(..., seed=)`) draws the same augmentations on any device.
`PRESETS` holds the settings each workflow uses.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureTyped,
    Lambdad,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
)
from pydantic import Field

from medwss.config import StrictConfig
from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError
from medwss.transforms.stain import RandHEStaind

Probability = Field(default=0.0, ge=0.0, le=1.0)


class AugmentConfig(StrictConfig):
    """Which augmentations run and how strongly; a transform runs when its probability is above 0.

    Strengths default to mild, medically safe values, probabilities to 0 (off): a config names the
    transforms it wants, e.g. ``AugmentConfig(flip_prob=0.5)``. Spatial transforms act in the plane of
    the first two spatial axes (axial for volumes on the canonical grid).
    """

    flip_prob: float = Probability
    """Probability of flipping each axis of `flip_axes`."""
    flip_axes: tuple[int, ...] = (0, 1)
    """Spatial axes that may be flipped (0: rows, 1: columns = left–right of a canonical slice)."""
    rot90_prob: float = Probability
    """Probability of a rotation by 90°, 180° or 270° in plane (needs a square in-plane size)."""
    affine_prob: float = Probability
    """Probability of a random affine (rotation, scale, translation; one resampling)."""
    rotate: float = Field(default=0.26, ge=0.0)
    """Affine in-plane rotation, uniform in ± `rotate` radians."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Affine scale factor range of MONAI's grid (per in-plane axis; > 1 shows more of the image)."""
    translate: float = Field(default=0.0, ge=0.0)
    """Affine translation, uniform in ± `translate` pixels per in-plane axis."""
    affine_padding: Literal["zeros", "border", "reflection"] = "border"
    """How images are padded where the affine samples outside them (zeros, border, reflection)."""
    scale_intensity_prob: float = Probability
    """Probability of multiplying intensities by 1 + U(± `scale_intensity`)."""
    scale_intensity: float = Field(default=0.1, ge=0.0)
    shift_intensity_prob: float = Probability
    """Probability of adding U(± `shift_intensity`) to intensities."""
    shift_intensity: float = Field(default=0.1, ge=0.0)
    channel_wise: bool = False
    """Draw the intensity scale and shift per channel (else one per sample)."""
    gamma_prob: float = Probability
    """Probability of a gamma curve on the sample's range (MONAI ``RandAdjustContrast``)."""
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast_prob: float = Probability
    """Probability of scaling intensities about their mean by 1 + U(± `contrast`)."""
    contrast: float = Field(default=0.25, ge=0.0)
    noise_prob: float = Probability
    """Probability of Gaussian noise with a standard deviation uniform in [0, `noise_std`]."""
    noise_std: float = Field(default=0.05, ge=0.0)
    blur_prob: float = Probability
    """Probability of a Gaussian blur with sigma (pixels) uniform in `blur_sigma`."""
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    bias_prob: float = Probability
    """Probability of a smooth multiplicative bias field (MRI), polynomial coefficients in [0, `bias_coeff`]."""
    bias_coeff: float = Field(default=0.1, ge=0.0)
    lowres_prob: float = Probability
    """Probability of simulating a lower resolution: down by a zoom uniform in `lowres_zoom`, then back up."""
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    stain_prob: float = Probability
    """Probability of the H&E stain jitter (3-channel RGB images in [0, 1] only)."""
    stain_scale: float = Field(default=0.05, ge=0.0)
    """Each stain's concentration multiplied by 1 ± `stain_scale`."""
    stain_shift: float = Field(default=0.02, ge=0.0)
    """Each stain's concentration shifted by ± `stain_shift` (optical density)."""
    clip: tuple[float, float] | None = None
    """Clip images to ``(low, high)`` at the end (None: no clipping)."""


PRESETS: dict[str, AugmentConfig] = {
    "segmentation": AugmentConfig(
        flip_prob=0.5, scale_intensity_prob=1.0, shift_intensity_prob=1.0, channel_wise=True
    ),
    "classifier": AugmentConfig(
        flip_prob=0.5, flip_axes=(1,), scale_intensity_prob=1.0, scale_intensity=0.05, noise_prob=1.0, clip=(-1.0, 1.0)
    ),
    "lr_flip": AugmentConfig(flip_prob=0.5, flip_axes=(1,)),
    "intensity": AugmentConfig(
        scale_intensity_prob=1.0, scale_intensity=0.1, shift_intensity_prob=1.0, shift_intensity=0.05
    ),
    "strong_intensity": AugmentConfig(
        gamma_prob=1.0, contrast_prob=1.0, blur_prob=0.5, noise_prob=1.0, noise_std=0.1
    ),
    "pretrain": AugmentConfig(
        flip_prob=0.5, rot90_prob=0.75, affine_prob=1.0, rotate=0.0, scale=(0.77, 1.0), translate=8.0,
        affine_padding="reflection", gamma_prob=1.0, gamma=(0.86, 1.16), contrast_prob=1.0, contrast=0.1,
        shift_intensity_prob=1.0, shift_intensity=0.08, blur_prob=0.3, blur_sigma=(0.3, 1.0), noise_prob=0.5,
        noise_std=0.02, stain_prob=1.0, clip=(0.0, 1.0),
    ),
}  # fmt: skip
"""Settings per use. ``segmentation``: flips of both in-plane axes and a mild per-channel intensity
scale and shift; ``classifier``: left–right flips, gain and noise, clipped to [-1, 1]; ``lr_flip``:
left–right flips only (COIN batches); ``intensity``: gain and offset only; ``strong_intensity``: the
DuPL strong view (gamma, contrast, blur, noise; no flips, no warps); ``pretrain``: the MONAI
counterpart of the contrastive-pretraining views (for the speed benchmark)."""


class AugmentPipeline(Compose):
    """A MONAI `Compose` that knows which keys are images, label maps and masks, and its spatial dims."""

    def __init__(
        self,
        transforms: Sequence,
        image_keys: tuple[str, ...],
        label_keys: tuple[str, ...],
        mask_keys: tuple[str, ...],
        spatial_dims: int,
    ) -> None:
        super().__init__(list(transforms))
        self.image_keys = image_keys
        self.label_keys = label_keys
        self.mask_keys = mask_keys
        self.spatial_dims = spatial_dims

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the pipeline transforms."""
        return self.image_keys + self.label_keys + self.mask_keys


class _Offsetd(MapTransform):
    """Add `offset` to label maps, as float32 (before resampling) or rounded to int64 (after)."""

    def __init__(self, keys: tuple[str, ...], offset: float, integer: bool) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.offset = offset
        self.integer = integer

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            v = torch.as_tensor(d[key]).float() + self.offset
            d[key] = v.round().long() if self.integer else v
        return d


def augment_pipeline(
    config: AugmentConfig,
    image_keys: Sequence[str] = ("image",),
    label_keys: Sequence[str] = ("label",),
    mask_keys: Sequence[str] = ("valid",),
    spatial_dims: int = 2,
    device: torch.device | str | None = None,
) -> AugmentPipeline:
    """The MONAI pipeline of `config` for channel-first samples ``{key: (C, *S)}``.

    Args:
        config: Which transforms run, how often and how strongly.
        image_keys: Keys of images (every transform applies).
        label_keys: Keys of label maps (class indices, `IGNORE` = -1): spatial transforms only, nearest
            neighbour, `IGNORE` where padded; returned as int64.
        mask_keys: Keys of masks (e.g. "valid"): spatial transforms only, nearest neighbour, 0 where padded.
        spatial_dims: 2 or 3.
        device: Move every key there first (None: leave tensors where they are).

    Keys absent from a sample are skipped.
    """
    if spatial_dims not in (2, 3):
        raise InvalidDataError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    c = config
    images, labels, masks = tuple(image_keys), tuple(label_keys), tuple(mask_keys)
    spatial = images + labels + masks
    if not spatial:
        raise InvalidDataError("an augmentation pipeline needs at least one image, label or mask key")
    dev = None if device is None else torch.device(device)
    steps: list = [EnsureTyped(spatial, data_type="tensor", device=dev, track_meta=False, allow_missing_keys=True)]
    if c.flip_prob > 0:
        for axis in c.flip_axes:
            if not 0 <= axis < spatial_dims:
                raise InvalidDataError(f"flip axis {axis} is not a spatial axis of a {spatial_dims}D image")
            steps.append(RandFlipd(spatial, prob=c.flip_prob, spatial_axis=axis, allow_missing_keys=True))
    if c.rot90_prob > 0:
        steps.append(RandRotate90d(spatial, prob=c.rot90_prob, max_k=3, spatial_axes=(0, 1), allow_missing_keys=True))
    if c.affine_prob > 0:
        inplane = (0.0,) * (spatial_dims - 2)
        rotate = (c.rotate,) if spatial_dims == 2 else (0.0, 0.0, c.rotate)
        scale = ((c.scale[0] - 1, c.scale[1] - 1),) * 2 + inplane
        modes = ["bilinear"] * len(images) + ["nearest"] * (len(labels) + len(masks))
        pads = [c.affine_padding] * len(images) + ["zeros"] * (len(labels) + len(masks))
        affine = RandAffined(
            spatial,
            prob=c.affine_prob,
            rotate_range=rotate,
            scale_range=scale,
            translate_range=(c.translate, c.translate) + inplane,
            mode=modes,
            padding_mode=pads,
            allow_missing_keys=True,
        )
        if labels:  # IGNORE -> 0 around the resampling: the zeros padded in become IGNORE
            steps += [_Offsetd(labels, -float(IGNORE), integer=False), affine, _Offsetd(labels, float(IGNORE), True)]
        else:
            steps.append(affine)
    if not images:
        return AugmentPipeline(steps, images, labels, masks, spatial_dims)
    if c.stain_prob > 0:
        steps.append(
            RandHEStaind(images, prob=c.stain_prob, scale=c.stain_scale, shift=c.stain_shift, allow_missing_keys=True)
        )
    if c.gamma_prob > 0:
        steps.append(RandAdjustContrastd(images, prob=c.gamma_prob, gamma=c.gamma, allow_missing_keys=True))
    if c.contrast_prob > 0:
        steps.append(
            RandScaleIntensityFixedMeand(images, factors=c.contrast, prob=c.contrast_prob, allow_missing_keys=True)
        )
    if c.scale_intensity_prob > 0:
        steps.append(
            RandScaleIntensityd(
                images,
                factors=c.scale_intensity,
                prob=c.scale_intensity_prob,
                channel_wise=c.channel_wise,
                allow_missing_keys=True,
            )
        )
    if c.shift_intensity_prob > 0:
        steps.append(
            RandShiftIntensityd(
                images,
                offsets=c.shift_intensity,
                prob=c.shift_intensity_prob,
                channel_wise=c.channel_wise,
                allow_missing_keys=True,
            )
        )
    if c.bias_prob > 0:
        steps.append(RandBiasFieldd(images, coeff_range=(0.0, c.bias_coeff), prob=c.bias_prob, allow_missing_keys=True))
    if c.lowres_prob > 0:
        up = "bilinear" if spatial_dims == 2 else "trilinear"
        steps.append(
            RandSimulateLowResolutiond(
                images, prob=c.lowres_prob, zoom_range=c.lowres_zoom, upsample_mode=up, allow_missing_keys=True
            )
        )
    if c.blur_prob > 0:
        s = c.blur_sigma
        steps.append(
            RandGaussianSmoothd(images, sigma_x=s, sigma_y=s, sigma_z=s, prob=c.blur_prob, allow_missing_keys=True)
        )
    if c.noise_prob > 0:
        steps.append(RandGaussianNoised(images, prob=c.noise_prob, std=c.noise_std, allow_missing_keys=True))
    if c.clip is not None:
        steps.append(
            Lambdad(images, functools.partial(torch.clamp, min=c.clip[0], max=c.clip[1]), allow_missing_keys=True)
        )
    return AugmentPipeline(steps, images, labels, masks, spatial_dims)


def _seed_of(seed: int | np.random.Generator | torch.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31))
    if isinstance(seed, torch.Generator):
        return int(torch.randint(2**31, (1,), generator=seed))
    return int(seed) % 2**32


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A MONAI `MetaTensor` as a plain tensor (no metadata, no copy)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


@torch.no_grad()
def augment_batch(
    pipeline: AugmentPipeline,
    batch: Mapping[str, torch.Tensor],
    seed: int | np.random.Generator | torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """`pipeline` applied to every sample of a batch (on its device), restacked.

    Args:
        pipeline: From `augment_pipeline`.
        batch: Images ``(B, C, *S)``; label maps and masks ``(B, *S)`` or ``(B, 1, *S)``; keys the pipeline
            does not name (sizes, tags) pass through unchanged.
        seed: Seeds the pipeline first: an int, or a NumPy / torch generator one is drawn from (so the
            caller's seeded generator decides the augmentations); None continues the pipeline's own state.

    Returns:
        A new dict: the same keys, shapes, dtypes and devices.
    """
    if seed is not None:
        pipeline.set_random_state(seed=_seed_of(seed))
    keys = [k for k in pipeline.keys if k in batch]
    if not keys:
        return dict(batch)
    n = len(batch[keys[0]])
    channelless = {k for k in keys if batch[k].ndim == pipeline.spatial_dims + 1}  # (B, *S) label maps
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for i in range(n):
        sample = {k: batch[k][i][None] if k in channelless else batch[k][i] for k in keys}  # (C, *S)
        result = pipeline(sample)
        for k in keys:
            v = _plain(result[k])
            v = v[0] if k in channelless else v
            if v.shape != batch[k].shape[1:]:
                raise InvalidDataError(
                    f"augmentation changed the shape of '{k}' from {tuple(batch[k].shape[1:])} to {tuple(v.shape)}"
                    " (90° rotations need a square in-plane size)"
                )
            out[k].append(v)
    return {**batch, **{k: torch.stack(v).to(batch[k].dtype) for k, v in out.items()}}
