"""Intensity normalisation and augmentation pipelines (MONAI dictionary transforms, run on the device)."""

from medwss.transforms.intensity import CT_WINDOWS, intensity_transform, normalise, resolve_window

__all__ = ["CT_WINDOWS", "intensity_transform", "normalise", "resolve_window"]
