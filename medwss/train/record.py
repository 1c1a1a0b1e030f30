"""What a model file holds once read (`medwss.train.model_file`), also what older formats convert to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class ModelRecord:
    """A model file's content (see the module docstring)."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    legacy: str | None = None
    """The older format the file was converted from, None for a model file."""
