"""Intensity normalisation and augmentation pipelines (MONAI dictionary transforms, run on the device)."""

from medwss.transforms.augment import PRESETS, AugmentConfig, AugmentPipeline, augment_batch, augment_pipeline
from medwss.transforms.intensity import CT_WINDOWS, intensity_transform, normalise, resolve_window
from medwss.transforms.stain import RGB_FROM_HED, RandHEStaind, hed_jitter

__all__ = [
    "CT_WINDOWS",
    "PRESETS",
    "RGB_FROM_HED",
    "AugmentConfig",
    "AugmentPipeline",
    "RandHEStaind",
    "augment_batch",
    "augment_pipeline",
    "hed_jitter",
    "intensity_transform",
    "normalise",
    "resolve_window",
]
