"""Synthetic phantoms with exact ground truth: H&E whole-slide images, abdominal CT, prostate bi-parametric MRI.

Every generator is seeded (case ``i`` depends only on the seed and ``i``), small and fast by
default, writes its files atomically, and writes a manifest (``out/manifest.csv``) that
`medwss.data.manifest.check_manifest` accepts, with patient-level train/val/test splits.

Example:
    >>> from medwss.data.phantoms import generate
    >>> manifest = generate("ct", "out/ct", n=4, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medwss.data.phantoms.common import PHANTOMS, register_phantom
from medwss.data.phantoms.ct import CT_LABELS, CTOptions, generate_ct, make_scan
from medwss.data.phantoms.mri import MRI_SITES, MRI_ZONES, generate_mri, make_case
from medwss.data.phantoms.wsi import WSI_SITES, WSIOptions, generate_wsi, make_slide

PHANTOM_KINDS = PHANTOMS
"""The phantom kinds (``wsi``, ``ct``, ``mri``): the `PHANTOMS` registry, iterable over its names."""


def generate(
    kind: str,
    out: str | Path,
    n: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
    options: Mapping[str, object] | None = None,
) -> Path:
    """Generate `n` phantom cases of `kind` into the folder `out`.

    Args:
        kind: One of `PHANTOM_KINDS`: ``wsi``, ``ct`` or ``mri``.
        out: Output folder (created if needed).
        n: Number of cases, one patient each.
        seed: Seed; the same seed gives identical images and masks.
        scale: Multiplies the image size (WSI: level-0 pixels; CT/MRI: voxels per axis, same field of view).
        progress: Show a progress bar.
        options: Kind-specific difficulty settings (``wsi``: `WSIOptions`, ``ct``: `CTOptions` fields);
            None or empty for the original phantoms.

    Returns:
        Path of the manifest written, ``out/manifest.csv``.

    Raises:
        UnknownNameError: (a `ConfigError`) unknown kind.
        MedwssError: Invalid `n`, `seed` or `scale`.
        ConfigError: Options for a kind that takes none, or an unknown or bad option.
    """
    make = PHANTOMS.get(kind)
    if not options:
        return make(out, n=n, seed=seed, scale=scale, progress=progress)
    if kind not in ("wsi", "ct"):
        from medwss.errors import ConfigError

        raise ConfigError(f"phantom kind '{kind}' takes no options (got {', '.join(options)})")
    return make(out, n=n, seed=seed, scale=scale, progress=progress, options=options)  # type: ignore[call-arg]  # wsi, ct


__all__ = [
    "CT_LABELS",
    "CTOptions",
    "MRI_SITES",
    "MRI_ZONES",
    "PHANTOMS",
    "PHANTOM_KINDS",
    "WSI_SITES",
    "WSIOptions",
    "generate",
    "generate_ct",
    "generate_mri",
    "generate_wsi",
    "make_case",
    "make_scan",
    "make_slide",
    "register_phantom",
]
