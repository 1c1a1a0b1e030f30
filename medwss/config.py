"""Typed YAML configs: a pydantic model per command, validated in one place, errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from medwss.errors import ConfigError, require_file

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base for configs: unknown keys are errors, values are stored as given."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def load_config(path: str | Path, model: type[T]) -> T:
    """Read a YAML file into `model`; any problem raises `ConfigError` naming the file and the keys."""
    import yaml

    p = require_file(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", p) from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys to values", p)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), p) from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


def merge_config(model: type[T], path: str | Path | None, flags: dict[str, object]) -> T:
    """A config from an optional YAML file with command-line `flags` (those not None) on top.

    Raises:
        ConfigError: Naming the file (when given) and every invalid key.
    """
    base = load_config(path, model).model_dump() if path else {}
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return model.model_validate({**base, **given})
    except ValidationError as exc:
        raise ConfigError(_problems(exc), path) from exc
