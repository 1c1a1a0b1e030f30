"""Loading local weight files into encoders: ``weights_only=True`` always, prefixes stripped, mismatches reported.

Files: ``torch.save`` pickles (``.pt``, ``.pth``, ``.bin``, ``.ckpt``), read with ``weights_only=True``,
and ``.safetensors`` (needs the optional extra ``medwss[safetensors]``). Nothing is ever fetched.
Encoders with ``strict_weights = True`` (the foundation-model layouts of `medwss.embed.encoders.vit_timm`)
load strict: any missing, unexpected or mis-shaped key fails in one line naming the file and the first keys.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from medwss.errors import ConfigError, require_file

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model", "encoder")
"""Keys under which checkpoints commonly nest the state dict."""
PREFIXES = ("module.", "encoder.", "model.")
"""Key prefixes left by DataParallel/DDP and by models that hold the encoder as ``.encoder`` or ``.model``."""
SAFETENSORS_SUFFIX = ".safetensors"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: a plain one, or one nested under `WRAPPER_KEYS`.

    Raises:
        ConfigError: The file holds anything but tensors and plain containers (it is never
            unpickled with code execution), or no state dict.
    """
    p = require_file(path)
    if p.suffix.lower() == SAFETENSORS_SUFFIX:
        return _read_safetensors(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        from medwss.train.model_file import load_refusal

        raise ConfigError(
            f"refused or unreadable weights file ({load_refusal(exc, p)}); "
            "save plain tensors with torch.save(model.state_dict(), path)",
            p,
        ) from exc
    for _ in range(3):  # {"model": {"state_dict": {...}}} and the like
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not all(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError("no state dict found (expected a mapping of names to tensors)", p)
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConfigError("no tensors found in the state dict", p)
    return tensors


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (the optional dependency ``safetensors``)."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ConfigError(
            "reading .safetensors needs the optional package safetensors (pip install 'medwss[safetensors]')", p
        ) from exc
    try:
        tensors = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"unreadable .safetensors file ({first})", p) from exc
    if not tensors:
        raise ConfigError("no tensors found in the .safetensors file", p)
    return dict(tensors)


def _match_keys(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Strip `PREFIXES` from keys the module does not know; add the module's own prefix if that makes them fit."""
    out = {}
    for key, value in state.items():
        k = key
        while k not in wanted and k.startswith(PREFIXES):
            k = k.split(".", 1)[1]
        out[k] = value
    if not set(out) & wanted:  # e.g. a bare MONAI ResNet state dict for an encoder holding it as ``backbone``
        for head in sorted({w.split(".", 1)[0] + "." for w in wanted if "." in w}):
            moved = {head + k: v for k, v in out.items()}
            if set(moved) & wanted:
                return moved
    return out


def load_weights(module: nn.Module, path: str | Path) -> tuple[list[str], list[str], str]:
    """Load a weights file into `module`, reporting what did not fit (strict for ``strict_weights`` modules).

    Args:
        module: The model (an `Encoder`, or any module). If it has ``remap_state_dict(state)``, the
            file's state dict goes through it first (e.g. Hugging Face ViT keys to timm's); if its
            ``strict_weights`` is True, every key must fit (`check_strict`).
        path: A file written by ``torch.save`` holding a state dict, or a dict with the state
            dict under ``state_dict``, ``model`` or ``encoder``, or a ``.safetensors`` file;
            ``module.``, ``encoder.`` and ``model.`` key prefixes are stripped.

    Returns:
        ``(missing_keys, unexpected_keys, checksum)``: keys of the module the file lacks, keys of
        the file the module lacks (both also logged as warnings), and the file's sha256 (hex).

    Raises:
        ConfigError: The file is refused by ``weights_only``, holds no state dict, no key fits the
            module, or a tensor's shape differs from the module's.
    """
    p = require_file(path)
    own = module.state_dict()
    state = read_state_dict(p)
    remap = getattr(module, "remap_state_dict", None)
    if callable(remap):
        state = remap(state)
    state = _match_keys(state, set(own))
    if getattr(module, "strict_weights", False):
        check_strict(state, own, module, p)
    common = set(state) & set(own)
    if not common:
        raise ConfigError(
            f"none of the {len(state)} weights fits the model ({type(module).__name__}, e.g. "
            f"file key {next(iter(state))!r} vs model key {next(iter(own), None)!r}); wrong architecture?",
            p,
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(common)
        if state[k].shape != own[k].shape
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ConfigError(f"weights of the wrong shape: {'; '.join(wrong[:3])}{more}", p)
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing:
        log.warning("%s: %d model weights not in the file, left as initialised: %s", p, len(missing), _few(missing))
    if unexpected:
        log.warning("%s: %d weights in the file not used by the model: %s", p, len(unexpected), _few(unexpected))
    return missing, unexpected, sha256_file(p)


def check_strict(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], module: nn.Module, path: Path) -> None:
    """Refuse, in one line naming `path` and the first keys, a state dict that does not fit `module` exactly."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(state) & set(own))
        if state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or wrong):
        return
    name = getattr(module, "name", type(module).__name__)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_few(missing, 3)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_few(unexpected, 3)})")
    if wrong:
        parts.append(f"{len(wrong)} of the wrong shape ({_few(wrong, 2)})")
    raise ConfigError(
        f"weights do not fit encoder '{name}' strictly: {'; '.join(parts)}; wrong file or architecture?", path
    )


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")
