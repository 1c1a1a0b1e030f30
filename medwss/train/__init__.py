"""One training engine and one model file for every workflow.

`fit` runs a step function (and an optional validation function) with seeding, one device,
mixed precision on CUDA, gradient accumulation and clipping, DDP under torchrun, model selection on
a named metric, plateau-aware early stopping, ``history.json`` and an atomic, resumable checkpoint.
`save_model` / `load_model` write and read the one model file.
"""

from __future__ import annotations

from medwss.train.config import EngineConfig
from medwss.train.context import Context
from medwss.train.device import resolve_device
from medwss.train.engine import FitResult, fit
from medwss.train.model_file import ModelRecord, load_model, read_model, register_model_kind, save_model
from medwss.train.signature import RUN_ONLY, changed_keys, signature

__all__ = [
    "RUN_ONLY",
    "Context",
    "EngineConfig",
    "FitResult",
    "ModelRecord",
    "changed_keys",
    "fit",
    "load_model",
    "read_model",
    "register_model_kind",
    "resolve_device",
    "save_model",
    "signature",
]
