"""The model formats medwss wrote before the one model file: converted where they say what to build, else named.

=====================  ===========================================  ==============================
older format           keys                                         `load_model`
=====================  ===========================================  ==============================
MIL model              ``state_dict``, ``meta.aggregator``          converted (kind ``mil``)
segmenter              ``config`` (``network``), ``state_dict``     converted (kind ``segmenter``)
COIN classifier        ``state_dict``, ``config``, ``spec``         converted (``coin_classifier``)
COIN generator         ``state_dict``, ``settings``, ``config``     converted (``coin_generator``)
encoder weights        a bare state dict (tensors only)             refused: `create_encoder(weights=)`
=====================  ===========================================  ==============================

The refused ones still load with the function named, until their workflows write model files.
The pseudo-label trainers (kinds ``pseudo_cam``, ``pseudo_agmm``, ``pseudo_dupl``) saved no model
before the model file, so they have no older format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medwss.errors import UnsupportedFormatError
from medwss.train.record import ModelRecord

MIL_CONFIG_KEYS = ("aggregator", "aggregator_kwargs", "in_dim", "n_classes")

_REFUSED = (
    (
        {"state_dict", "config", "spec"},
        "older COIN classifier file whose config names no channels: load_classifier cannot rebuild it (retrain)",
    ),
    (
        {"state_dict", "settings", "config"},
        "older COIN generator file whose settings name no channels: load_generator cannot rebuild it (retrain)",
    ),
    (
        {"state_dict", "config", "meta"},
        "older segmenter file whose config names no network: load_segmenter cannot rebuild it (retrain)",
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
    seg = blob.get("config")
    if {"state_dict", "config", "meta"} <= keys and isinstance(seg, Mapping) and "network" in seg:
        return ModelRecord("segmenter", dict(seg), dict(blob["state_dict"]), dict(meta or {}), str(path),
                           legacy="segmenter (older save_segmenter format)")  # fmt: skip
    coin = _coin(blob, keys, path)
    if coin is not None:
        return coin
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


def _coin(blob: Mapping[str, Any], keys: set[str], path: str | Path) -> ModelRecord | None:
    """The older COIN classifier / generator files (`save_classifier`, `save_generator` before the model file)."""
    config, spec, settings = blob.get("config"), blob.get("spec"), blob.get("settings")
    if {"state_dict", "config", "spec"} <= keys and isinstance(config, Mapping) and "channels" in config:
        build = {"channels": list(config["channels"]), "stem_stride": int(config.get("stem_stride", 2))}
        meta = {"train_config": dict(config), "spec": dict(spec) if isinstance(spec, Mapping) else {}}
        return ModelRecord("coin_classifier", build, dict(blob["state_dict"]), meta, str(path),
                           legacy="COIN classifier (older format)")  # fmt: skip
    if {"state_dict", "settings", "config"} <= keys and isinstance(settings, Mapping) and "channels" in settings:
        meta = {"train_config": dict(config) if isinstance(config, Mapping) else {}}
        return ModelRecord("coin_generator", dict(settings), dict(blob["state_dict"]), meta, str(path),
                           legacy="COIN generator (older format)")  # fmt: skip
    return None
