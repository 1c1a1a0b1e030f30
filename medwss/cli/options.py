"""Command-line flags generated from a pydantic config, and the one merge of defaults, YAML and flags.

`add_config_flags` adds one ``--field-name`` flag per field of a config model (underscores become
dashes); the field's annotation decides how the flag reads its values and its docstring (or
``Field(description=)``) is the help, followed by the default, generated here and never written by
hand. `config_from_args` builds the config: the model's defaults, under the ``--config`` YAML file,
under the flags given on the command line (a flag not given leaves the YAML's value alone), validated
once by pydantic; an invalid value raises one `ConfigError` line naming the flag or the YAML key.

How annotations become flags:

- ``int``, ``float``, ``str``, ``Path``: one value (pydantic converts and checks it: ``--n abc`` is
  ``--n: Input should be a valid integer``).
- ``bool``: ``--flag`` / ``--no-flag``.
- ``Literal[...]``: ``choices``.
- ``list[X]``, ``tuple[X, ...]``: one or more values, also comma-separated, and the flag may repeat
  (``--gt-labels 2 3``, ``--sites DU,HT``, ``--split train --split val``); the values replace the
  YAML's list. A fixed-length ``tuple[X, Y]`` takes exactly that many values (``--cluster 6 16``).
- ``X | None``: the word ``none`` (or ``null``) gives None.
- ``dict``: a YAML flow mapping, ``--options '{tumor_contrast: 2}'``.
- other unions (``str | tuple[float, float]``): ``none``, a YAML flow value (``[0, 255]``),
  comma-separated items (``-160,240``) or the word itself; pydantic decides.
- a nested model: skipped (set it in the YAML file; the help lists it as "YAML only") unless it
  is named in ``flatten``, which adds its fields with a prefix (``flatten={"slices": ""}``: the
  ``slices:`` section's ``size`` is ``--size``; ``{"augment": "augment-"}`` would give
  ``--augment-flip``).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from medwss.config import describe_errors
from medwss.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

FLAGS_KEY = "_config_flags"
"""Namespace attribute holding ``{dest: flag}`` of every generated flag of the (sub)command."""


class _NoneValue:
    """The value of a flag given as ``none``: sets the field to None (a plain None means "not given")."""

    def __repr__(self) -> str:
        return "none"

    def __str__(self) -> str:
        return "none"


NONE = _NoneValue()
_NONE_WORDS = ("none", "null")


def dest_of(path: str) -> str:
    """The argparse ``dest`` of a field path (``slices.size`` → ``slices__size``; a top-level field keeps its name)."""
    return path.replace(".", "__")


# ---- annotations ------------------------------------------------------------------------------


def _unwrap(ann: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); a union of several types stays a union."""
    if get_origin(ann) in (Union, types.UnionType):
        members = [a for a in get_args(ann) if a is not type(None)]
        optional = len(members) < len(get_args(ann))
        if len(members) == 1:
            return members[0], optional
        return Union[tuple(members)], optional  # noqa: UP007
    return ann, False


def _model_of(ann: Any) -> type[BaseModel] | None:
    inner, _ = _unwrap(ann)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _is_sequence(ann: Any) -> bool:
    origin = get_origin(ann)
    return origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str
    )


def _is_mapping(ann: Any) -> bool:
    origin = get_origin(ann) or ann
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _literal_values(ann: Any) -> tuple[Any, ...] | None:
    return get_args(ann) if get_origin(ann) is Literal else None


# ---- value converters ---------------------------------------------------------------------------


def _yaml_value(text: str) -> Any:
    """A YAML flow value of a flag (no aliases); the text itself when it does not parse."""
    import yaml

    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
            return text
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _scalar(optional: bool, literal: tuple[Any, ...] | None = None) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if optional and text.strip().lower() in _NONE_WORDS:
            return NONE
        if literal is not None:
            for value in literal:
                if str(value) == text:
                    return value
        return text

    return convert


def _mapping(optional: bool) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if optional and text.strip().lower() in _NONE_WORDS:
            return NONE
        value = _yaml_value(text)
        return {} if value is None else value

    return convert


def _union(optional: bool, members: tuple[Any, ...]) -> Callable[[str], Any]:
    has_sequence = any(_is_sequence(m) for m in members)

    def convert(text: str) -> Any:
        stripped = text.strip()
        if optional and stripped.lower() in _NONE_WORDS:
            return NONE
        if stripped[:1] in "[{":
            return _yaml_value(stripped)
        if has_sequence and "," in stripped:
            return [_yaml_value(v.strip()) for v in stripped.split(",") if v.strip()]
        return text

    return convert


class _ListAction(argparse.Action):
    """One or more values, comma-separated too; a repeated flag adds to the list; ``none`` alone gives None."""

    def __init__(self, *args: Any, item: Callable[[str], Any], optional: bool, **kwargs: Any) -> None:
        self.item = item
        self.optional = optional
        super().__init__(*args, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        tokens = [values] if isinstance(values, str) else list(values)
        if self.optional and len(tokens) == 1 and tokens[0].strip().lower() in _NONE_WORDS:
            setattr(namespace, self.dest, NONE)
            return
        items = []
        for token in tokens:
            for piece in token.split(","):
                if piece.strip():
                    value = self.item(piece.strip())
                    if self.choices is not None and value not in self.choices:
                        choose = ", ".join(str(c) for c in self.choices)
                        raise argparse.ArgumentError(self, f"invalid choice: {piece.strip()!r} (choose from {choose})")
                    items.append(value)
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, (before if isinstance(before, list) else []) + items)


# ---- help -----------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return "(a section)"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_text(v) for v in value) if value else "(empty)"
    return str(value)


def _describe(info: FieldInfo) -> str:
    return " ".join((info.description or "").replace("`", "").split())


def default_text(info: FieldInfo, flag: str | None = None, is_bool: bool = False, fixed: bool = False) -> str:
    """``default: X`` of a field (``required`` without a default); booleans name the flag that is the default.

    Lists show comma-separated (as a flag may take them), fixed-length tuples space-separated.
    """
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if is_bool and flag and isinstance(value, bool):
        return f"default: --{'' if value else 'no-'}{flag}"
    if fixed and isinstance(value, tuple | list):
        return "default: " + " ".join(_text(v) for v in value)
    return f"default: {_text(value)}"


def _help(info: FieldInfo, flag: str, is_bool: bool, fixed: bool = False) -> str:
    desc = _describe(info)
    tail = default_text(info, flag, is_bool, fixed)
    text = f"{desc} ({tail})" if desc else tail
    return text.replace("%", "%%")


_METAVARS = {int: "INT", float: "X", str: "TEXT", Path: "PATH"}


def _metavar(ann: Any, flag: str) -> str:
    inner, _ = _unwrap(ann)
    return (
        _METAVARS.get(inner, flag.replace("-", "_").upper())
        if isinstance(inner, type)
        else flag.replace("-", "_").upper()
    )


# ---- adding flags -----------------------------------------------------------------------------------


def add_config_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    exclude: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    short: Mapping[str, str] | None = None,
    aliases: Mapping[str, str | Sequence[str]] | None = None,
    flatten: Mapping[str, str] | None = None,
    converters: Mapping[str, Callable[[str], Any]] | None = None,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, str]:
    """Add one flag per field of `model` to `parser` (in an argument group); returns ``{field path: flag}``.

    Args:
        parser: The (sub)command's parser.
        model: The pydantic config class.
        exclude: Field paths (``seed``, ``slices.size``) to leave out (positional inputs, job flags).
        rename: Field path → flag name (without dashes) replacing the generated one.
        short: Field path → a one-letter short option (``-n``).
        aliases: Field path → more option strings (``"--split"``) kept for old command lines.
        flatten: Nested-model field → prefix of its flags (``""``: none); other nested models are YAML only.
        converters: Field path → a converter of the flag's text (instead of the one the annotation implies).
        title: Title of the argument group (default: "settings (each is also a key of the --config YAML)").
        description: Text under the title (the YAML-only sections are appended to it).

    Raises:
        argparse.ArgumentError: Two fields would get the same flag.
    """
    rename, short, aliases = dict(rename or {}), dict(short or {}), dict(aliases or {})
    flatten, converters = dict(flatten or {}), dict(converters or {})
    yaml_only: list[str] = []
    added: dict[str, str] = {}
    group = parser.add_argument_group(title or "settings (each is also a key of the --config YAML)", description)

    def walk(cls: type[BaseModel], path_prefix: str, flag_prefix: str) -> None:
        for name, info in cls.model_fields.items():
            path = path_prefix + name
            if path in exclude:
                continue
            nested = _model_of(info.annotation)
            if nested is not None:
                if path in flatten:
                    walk(nested, path + ".", flatten[path])
                else:
                    yaml_only.append(path)
                continue
            flag = rename.get(path) or (flag_prefix + name).replace("_", "-")
            _add_one(group, path, flag, info, short.get(path), aliases.get(path), converters.get(path))
            added[path] = "--" + flag

    walk(model, "", "")
    if yaml_only:
        note = "YAML only (a section of --config): " + ", ".join(yaml_only) + "."
        group.description = f"{group.description} {note}" if group.description else note
    flags = dict(parser.get_default(FLAGS_KEY) or {})
    flags.update({dest_of(p): f for p, f in added.items()})
    parser.set_defaults(**{FLAGS_KEY: flags})
    return added


def _add_one(
    group: Any,
    path: str,
    flag: str,
    info: FieldInfo,
    short: str | None,
    alias: str | Sequence[str] | None,
    convert: Callable[[str], Any] | None,
) -> None:
    names = [f"-{short}"] if short else []
    names.append(f"--{flag}")
    names += [alias] if isinstance(alias, str) else list(alias or ())
    kw: dict[str, Any] = {"dest": dest_of(path), "default": argparse.SUPPRESS}
    ann, optional = _unwrap(info.annotation)
    metavar = _metavar(ann, flag)
    literal = _literal_values(ann)
    is_bool = ann is bool
    fixed = False
    if convert is not None:
        kw |= {"type": convert, "metavar": metavar}
    elif is_bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif literal is not None:
        kw |= {"type": _scalar(optional, literal), "choices": [*literal, *([NONE] if optional else [])]}
        kw["metavar"] = "{" + ",".join(str(v) for v in kw["choices"]) + "}"
    elif _is_sequence(ann):
        args = get_args(ann)
        fixed = get_origin(ann) is tuple and bool(args) and Ellipsis not in args
        item = args[0] if args else str
        item_literal = _literal_values(item)
        if fixed:  # tuple[int, int]: exactly that many values
            kw |= {"nargs": len(args), "type": _scalar(False), "metavar": tuple(_metavar(a, flag) for a in args)}
        else:
            kw |= {"nargs": "+", "action": _ListAction, "item": _scalar(False, item_literal), "optional": optional}
            if item_literal is not None:
                kw["choices"] = list(item_literal)
                kw["metavar"] = "{" + ",".join(str(v) for v in item_literal) + "}"
            else:
                kw["metavar"] = _metavar(item, flag)
    elif _is_mapping(ann):
        kw |= {"type": _mapping(optional), "metavar": "{KEY: VALUE, ...}"}
    elif get_origin(ann) in (Union, types.UnionType):
        kw |= {"type": _union(optional, get_args(ann)), "metavar": metavar}
    else:  # int, float, str, Path and anything pydantic converts from text
        kw |= {"type": _scalar(optional), "metavar": metavar}
    kw["help"] = _help(info, flag, is_bool, fixed)
    group.add_argument(*names, **kw)


# ---- the merge ----------------------------------------------------------------------------------------


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of `model`, nested models expanded (``slices.size``)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        if nested is not None:
            out += leaf_paths(nested, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def given_flags(model: type[BaseModel], args: argparse.Namespace) -> dict[str, Any]:
    """``{field path: value}`` of the fields of `model` whose flags were given (None: not given; ``none`` → None)."""
    values = vars(args)
    out = {}
    for path in leaf_paths(model):
        value = values.get(dest_of(path))
        if value is not None:
            out[path] = None if value is NONE else value
    return out


def _read_mapping(path: str | Path | None) -> dict[str, Any]:
    from medwss.config import read_yaml

    if not path:
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys to values", Path(path))
    return data


def _set(data: dict[str, Any], path: str, value: Any, yaml_path: str | Path | None) -> None:
    keys = path.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        sub = node.get(key)
        if sub is None:
            sub = {}
        elif not isinstance(sub, dict):
            raise ConfigError(f"{'.'.join(keys[: i + 1])}: must be a mapping of keys to values", yaml_path)
        else:
            sub = dict(sub)
        node[key] = sub
        node = sub
    node[keys[-1]] = value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_from_args(
    model: type[T],
    args: argparse.Namespace,
    yaml_path: str | Path | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> T:
    """The config of a command: `model`'s defaults < the YAML file at `yaml_path` < the flags given < `extra`.

    A flag not given on the command line (absent from `args`, or None) leaves the YAML's value;
    ``--flag none`` sets None. Nested sections merge key by key (``--size 32`` changes ``slices.size``
    and keeps the YAML's other ``slices:`` keys). `extra` holds values the command sets itself
    (positional inputs such as ``phantom ct``'s kind).

    Raises:
        ConfigError: One line: each invalid value named by its flag (``--n: ...``) or its YAML key
            (``n: ...``, after the file's name); unknown YAML keys likewise.
    """
    data = _read_mapping(yaml_path)
    flags = given_flags(model, args)
    for path, value in flags.items():
        _set(data, path, value, yaml_path)
    for key, value in (extra or {}).items():
        _set(data, key, value, yaml_path)
    names = dict(vars(args).get(FLAGS_KEY) or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, flags, names, yaml_path) from exc
    except ConfigError as exc:  # a model's own check (model_post_init)
        if exc.path is None and yaml_path:
            raise ConfigError(exc.message, yaml_path) from exc
        raise


def _one_line(exc: ValidationError, flags: Mapping[str, Any], names: Mapping[str, str], yaml_path: Any) -> ConfigError:
    from_yaml = False

    def one(loc: list[str], msg: str) -> str:
        nonlocal from_yaml
        flag_path = next((".".join(loc[:i]) for i in range(len(loc), 0, -1) if ".".join(loc[:i]) in flags), None)
        if flag_path is not None:
            flag = names.get(dest_of(flag_path)) or "--" + flag_path.split(".")[-1].replace("_", "-")
            return f"{flag}: {msg} (got {_short(flags[flag_path])})"
        from_yaml = from_yaml or bool(yaml_path)
        return f"{'.'.join(loc) or '(root)'}: {msg}"

    text = describe_errors(exc.errors(), one)
    if any(e.get("type") == "extra_forbidden" for e in exc.errors()):
        from_yaml = from_yaml or bool(yaml_path)
    return ConfigError(text, yaml_path if from_yaml else None)


def check_every_field_has_a_flag(
    model: type[BaseModel], parser: argparse.ArgumentParser, exclude: Sequence[str] = ()
) -> list[str]:
    """Field paths of `model` with no generated flag on `parser` (nested sections not flattened are YAML only)."""
    dests = {a.dest for a in parser._actions}
    missing = []
    for path in leaf_paths(model):
        if path in exclude or dest_of(path) in dests:
            continue
        head = path.split(".")[0]
        if "." in path and not any(d.startswith(head + "__") for d in dests):
            continue  # a section that is YAML only
        missing.append(path)
    return missing


__all__ = [
    "NONE",
    "add_config_flags",
    "config_from_args",
    "default_text",
    "dest_of",
    "given_flags",
    "leaf_paths",
    "check_every_field_has_a_flag",
]
