"""The model formats medwss wrote before the one model file: converted where they say what to build, else named.

=====================  ===========================================  ==============================
older format           keys                                         `load_model`
=====================  ===========================================  ==============================
MIL model              ``state_dict``, ``meta.aggregator``          converted (kind ``mil``)
segmenter              ``config``, ``state_dict``, ``meta``         refused: `load_segmenter`
COIN classifier        ``state_dict``, ``config``, ``spec``         refused: `load_classifier`
COIN generator         ``state_dict``, ``settings``, ``config``     refused: `load_generator`
encoder weights        a bare state dict (tensors only)             refused: `create_encoder(weights=)`
=====================  ===========================================  ==============================

The refused ones still load with the function named, until their workflows write model files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medwss.errors import UnsupportedFormatError
from medwss.train.model_file import ModelRecord

MIL_CONFIG_KEYS = ("aggregator", "aggregator_kwargs", "in_dim", "n_classes")

_REFUSED = (
    (
        {"state_dict", "config", "spec"},
        "COIN classifier file (older format); load it with medwss.counterfactual.classifier.load_classifier",
    ),
    (
        {"state_dict", "settings", "config"},
        "COIN generator file (older format); load it with medwss.counterfactual.train.load_generator",
    ),
    (
        {"state_dict", "config", "meta"},
        "segmenter file (older save_segmenter format); load it with medwss.seg.train.load_segmenter",
    ),
)


def convert(blob: Any, path: str | Path) -> ModelRecord:
    """A `ModelRecord` from an older format, or `UnsupportedFormatError` naming the format."""
    if not isinstance(blob, Mapping):
        raise UnsupportedFormatError(f"not a medwss model file (holds a {type(blob).__name__})", path)
    keys = set(blob)
    meta = blob.get("meta")
    if {"state_dict", "meta"} <= keys and isinstance(meta, Mapping) and "aggregator" in meta:
        config = {k: meta.get(k, {} if k == "aggregator_kwargs" else None) for k in MIL_CONFIG_KEYS}
        rest = {k: v for k, v in meta.items() if k not in MIL_CONFIG_KEYS}
        rest.setdefault("train_config", rest.pop("config", None))
        return ModelRecord("mil", config, dict(blob["state_dict"]), rest, str(path), legacy="MIL model (older format)")
    if blob.get("format") == "medwss-train-checkpoint":
        raise UnsupportedFormatError(
            "a training checkpoint, not a model file (the run writes model.pt when done)", path
        )
    for needed, message in _REFUSED:
        if needed <= keys:
            raise UnsupportedFormatError(message, path)
    if blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise UnsupportedFormatError(
            "a bare state dict (e.g. encoder weights in the older save_encoder format) does not say what to build; "
            "load it with medwss.embed.encoders.create_encoder(name, weights=path)",
            path,
        )
    raise UnsupportedFormatError(
        f"not a medwss model file (no 'kind'; keys: {', '.join(sorted(map(str, keys))[:6])})", path
    )
