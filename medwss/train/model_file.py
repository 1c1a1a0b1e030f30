"""The one model file: ``{"format", "kind", "config", "state_dict", "meta"}``, read with ``weights_only=True``.

``kind`` names what to build (``mil``, ``encoder``, ...), ``config`` is what its builder takes,
``state_dict`` the weights (tensors on the CPU), ``meta`` anything else worth keeping (training
config, encoder of the features, metrics). `load_model` dispatches on ``kind`` through a registry
(`MODEL_KINDS`) that each workflow fills with `register_model_kind`, found without imports by hand;
files of the older formats are recognised and converted, or refused with a one-line error naming
the format (`medwss.train.legacy`).

Example:
    >>> save_model("model.pt", "mil", model, {"aggregator": "abmil", ...})  # doctest: +SKIP
    >>> model, record = load_model("model.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from medwss.errors import CorruptFileError, UnsupportedFormatError, require_file
from medwss.io.atomic import atomic_path
from medwss.registry import Registry, UnknownNameError
from medwss.train.legacy import convert
from medwss.train.record import ModelRecord

FORMAT = "medwss-model"
VERSION = 1


class BuildFn(Protocol):
    """A model kind's builder: ``build(config) -> nn.Module`` with fresh weights.

    Contract: `config` is the JSON-like dict `save_model` stored for the kind; the module returned
    takes the file's ``state_dict`` (`load_model` loads it, then ``.eval()``). `tests/test_contracts.py`
    checks every registered builder takes one positional argument; each kind's tests round-trip a file.
    """

    def __call__(self, config: dict[str, Any], /) -> nn.Module: ...


MODEL_KINDS: Registry[BuildFn] = Registry("model kind", package="medwss", recursive=True, marker="register_model_kind(")
"""Kind → builder. Any medwss module that calls `register_model_kind` is found on the first lookup of a
kind nothing has registered yet (modules that quote the kind first), so `load_model` needs no
import from the caller."""


def register_model_kind(kind: str, build: BuildFn) -> BuildFn:
    """Make `load_model` build models of `kind` with ``build(config)`` (returns `build`).

    Raises:
        DuplicateNameError: `kind` already has a different builder.
    """
    return MODEL_KINDS.register(kind, build)


def model_kinds() -> list[str]:
    """Kinds `load_model` can build, sorted."""
    return sorted(MODEL_KINDS)


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def save_model(
    path: str | Path,
    kind: str,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model file atomically; `config` and `meta` are stored as JSON-like plain types."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": _plain(dict(config)),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "meta": _plain(dict(meta or {})),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, without torch's warnings on stderr."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise before the one-line refusal
        return torch.load(path, map_location="cpu", weights_only=True)


def load_refusal(exc: BaseException, path: str | Path | None = None) -> str:
    """Why `safe_torch_load` refused a file, in a few words (torch's own message runs to a dozen lines).

    ``pickle payload refused`` (the file would call or build something other than tensors and
    plain values: the global it asks for), ``pickle payload or foreign bytes refused`` (opcodes
    the safe unpickler does not take), ``empty file``, ``truncated or not a torch file``, else the
    first line of the error.
    """
    import pickle
    import re

    text = str(exc)
    g = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if g:
        return f"pickle payload refused (weights_only): it asks for {g.group(1)}"
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        return "pickle payload or foreign bytes refused (weights_only)"
    if path is not None and Path(path).is_file() and Path(path).stat().st_size == 0:
        return "empty file"
    if isinstance(exc, (EOFError, KeyError)) or "zip archive" in text or "central directory" in text:
        return "truncated or not a torch file"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return first[:160]


def read_model(path: str | Path) -> ModelRecord:
    """The record in a model file (or an older format converted to one), without building anything.

    Raises:
        FileNotFound: Nothing at `path`.
        CorruptFileError: ``torch.load(weights_only=True)`` refuses or cannot read the file.
        UnsupportedFormatError: Neither a model file nor a known older format.
    """

    p = require_file(path)
    try:
        blob = safe_torch_load(p)
    except Exception as exc:  # torch.load fails in many ways on foreign bytes; all mean "not readable here"
        raise CorruptFileError(f"not a medwss model file ({load_refusal(exc, p)})", p) from exc
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        return ModelRecord(
            str(blob["kind"]), dict(blob["config"]), dict(blob["state_dict"]), dict(blob["meta"]), str(p)
        )
    return convert(blob, p)


def load_model(
    path: str | Path, device: torch.device | str = "cpu", kind: str | None = None
) -> tuple[nn.Module, ModelRecord]:
    """Build the model a file describes and load its weights (strictly); eval mode, on `device`.

    Args:
        path: The model file.
        device: Where the model goes.
        kind: The kind the caller needs; a file of another kind is refused in one line.

    Raises:
        FileNotFound, CorruptFileError, UnsupportedFormatError: See `read_model`; also a kind
            nothing registers, another kind than `kind`, or weights that do not fit the built model.
    """
    record = read_model(path)
    if kind is not None and record.kind != kind:
        raise UnsupportedFormatError(f"a {record.kind!r} model file, not a {kind!r} one", record.path)
    build = _builder(record.kind, record.path)
    try:
        model = build(record.config)
        model.load_state_dict(record.state_dict)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CorruptFileError(f"{record.kind} model file does not rebuild ({first})", record.path) from exc
    return model.to(device).eval(), record


def _builder(kind: str, path: str | None) -> BuildFn:
    try:
        return MODEL_KINDS.get(kind)
    except UnknownNameError as exc:  # a file's content, not a configuration: an unsupported format
        raise UnsupportedFormatError(
            f"model file of kind {kind!r}, which nothing registers (known: {', '.join(exc.known)})", path
        ) from exc
