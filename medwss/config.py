"""Typed YAML configs: a pydantic model per command, validated in one place, errors naming the file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from medwss.errors import ConfigError, require_file

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base for configs: unknown keys are errors, values are stored as given.

    A field's docstring (the string literal under it) is its description: the help of its
    generated command-line flag (`medwss.cli.options.add_config_flags`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def read_yaml(path: str | Path) -> object:
    """Parse a YAML config file safely and within limits.

    Refused with `ConfigError` naming the file: a folder, a file over ``MEDWSS_MAX_CONFIG_BYTES``
    (1 MiB by default), text that is not UTF-8, invalid YAML, and any alias (``*name``): aliases
    let a few hundred bytes expand to gigabytes (the "billion laughs" bomb) and no medwss config
    needs them. Anchors without aliases are harmless and pass.
    """
    import yaml

    from medwss.io.limits import limit

    p = require_file(path)
    if not p.is_file():
        raise ConfigError("is a folder, not a YAML config file", p)
    cap = limit("MEDWSS_MAX_CONFIG_BYTES")
    size = p.stat().st_size
    if size > cap:
        raise ConfigError(f"config is {size:,} bytes, over the {cap:,}-byte limit (set MEDWSS_MAX_CONFIG_BYTES)", p)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a text (UTF-8) YAML file ({exc.reason} at byte {exc.start})", p) from exc
    if "\x00" in text:
        raise ConfigError("not a text YAML file (holds NUL bytes)", p)
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                where = f" (line {mark.line + 1})" if mark is not None else ""
                raise ConfigError(f"YAML aliases (*{event.anchor}) are not allowed in configs{where}", p)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", p) from exc
    except RecursionError as exc:
        raise ConfigError("YAML nested too deeply", p) from exc


def load_config(path: str | Path, model: type[T]) -> T:
    """Read a YAML file into `model`; any problem raises `ConfigError` naming the file and the keys.

    The file is read by `read_yaml` (size limit, no aliases).
    """
    p = Path(path)
    data = read_yaml(p) or {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys to values", p)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), p) from exc


def _problems(exc: ValidationError) -> str:
    return describe_errors(exc.errors(), lambda loc, msg: f"{'.'.join(loc) or '(root)'}: {msg}")


def describe_errors(errors: Sequence[Any], one: Callable[[list[str], str], str]) -> str:
    """One line for pydantic `errors`: each through `one(loc, msg)`, unknown keys gathered in one part.

    A YAML written for another command fails on most of its keys; listing each as "Extra inputs
    are not permitted" buries the point, so they become ``keys this command does not read: a, b, ...``
    (with a hint when they are the majority).
    """
    parts, unknown = [], []
    for err in errors:
        loc = [str(x) for x in err["loc"]]
        if err.get("type") == "extra_forbidden":
            unknown.append(".".join(loc))
        else:
            parts.append(one(loc, err["msg"]))
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        hint = " (is this the config of another command?)" if len(unknown) >= 3 and len(unknown) > len(parts) else ""
        parts.append(f"keys this command does not read: {shown}{hint}")
    return "; ".join(parts)
