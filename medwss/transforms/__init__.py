"""Intensity normalisation and augmentation pipelines (MONAI dictionary transforms, run on the device)."""

from typing import TYPE_CHECKING

from medwss.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers
    from medwss.transforms.augment import PRESETS, AugmentConfig, AugmentPipeline, augment_batch, augment_pipeline
    from medwss.transforms.intensity import CT_WINDOWS, intensity_transform, normalise, resolve_window
    from medwss.transforms.stain import RGB_FROM_HED, RandHEStaind, hed_jitter

_LAZY = {
    "PRESETS": "medwss.transforms.augment",
    "AugmentConfig": "medwss.transforms.augment",
    "AugmentPipeline": "medwss.transforms.augment",
    "augment_batch": "medwss.transforms.augment",
    "augment_pipeline": "medwss.transforms.augment",
    "CT_WINDOWS": "medwss.transforms.intensity",
    "intensity_transform": "medwss.transforms.intensity",
    "normalise": "medwss.transforms.intensity",
    "resolve_window": "medwss.transforms.intensity",
    "RGB_FROM_HED": "medwss.transforms.stain",
    "RandHEStaind": "medwss.transforms.stain",
    "hed_jitter": "medwss.transforms.stain",
}
"""Where each re-exported name lives; imported on first use, so the CLI and configs do not load torch."""

__getattr__ = lazy_exports(__name__, _LAZY)


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
