"""The engine's checkpoint: models, optimisers, schedulers, scaler, RNG states and engine state in one file.

Written atomically (temporary name, then rename), so a run killed at any moment leaves either the
previous checkpoint or the new one; read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medwss.errors import ConfigError
from medwss.io.atomic import atomic_path

FORMAT = "medwss-train-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, blob: dict[str, Any]) -> Path:
    """Write `blob` (tensors and plain containers) with the format tag, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **blob}, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`.

    Raises:
        ConfigError: The file cannot be read, is refused by ``weights_only``, or is not an engine checkpoint.
    """
    p = Path(path)
    from medwss.train.model_file import load_refusal, safe_torch_load

    try:
        blob = safe_torch_load(p)
    except Exception as exc:  # torch.load fails in many ways on foreign bytes; all mean "not readable here"
        raise ConfigError(
            f"cannot resume: not a medwss training checkpoint ({load_refusal(exc, p)}); delete it to start again", p
        ) from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError("not a medwss training checkpoint (written by an older medwss?); delete it to start again", p)
    return blob
