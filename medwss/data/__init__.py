"""Manifests, datasets and synthetic phantoms."""

from medwss.data.manifest import Case, Manifest, check_manifest, load_manifest, write_manifest

__all__ = ["Case", "Manifest", "check_manifest", "load_manifest", "write_manifest"]
