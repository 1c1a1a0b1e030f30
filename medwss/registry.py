"""One registry type for every pluggable kind: name → factory, one error for an unknown name.

Every choice users make by name (an aggregator, an encoder, a weak-label kind, a pseudo-label
method, a volume reader, ...) goes through a `Registry`. A registry

- maps names to entries (a class, a factory function or a small record) in registration order;
- registers with ``@REG.register("name")`` or ``REG.register("name", obj)``, and refuses a
  second, different entry under a taken name;
- raises `UnknownNameError` (a `ConfigError`) for a name it does not know, in one line that lists
  the known names;
- finds its entries by itself: it knows the package its kind lives in and, on the first lookup
  that needs it, imports every module of that package whose source mentions the registration
  call (``marker``). A module dropped into that package registers without being imported by hand
  anywhere ("registration that cannot be forgotten").

It reads like a read-only mapping (``name in REG``, ``REG[name]``, ``list(REG)``, ``len(REG)``,
``REG.items()``), so code written against the dicts and tuples it replaces keeps working.

Example:
    >>> AGGREGATORS = Registry("aggregator", package="medwss.mil", marker="register_aggregator")
    >>> @AGGREGATORS.register("mean")
    ... class MeanAggregator: ...
    >>> AGGREGATORS.get("mean") is MeanAggregator
    True
    >>> AGGREGATORS.get("nope")  # doctest: +SKIP
    UnknownNameError: unknown aggregator 'nope'; known aggregators: mean
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from medwss.errors import ConfigError

T = TypeVar("T")

log = logging.getLogger("medwss.registry")


class UnknownNameError(ConfigError):
    """A name that no registry entry carries; the message lists the known names.

    Attributes:
        kind: What was looked up (``aggregator``, ``weak label kind``, ...).
        name: The name asked for.
        known: The registered names, sorted.
    """

    def __init__(self, kind: str, name: str, known: list[str], plural: str | None = None, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = list(known)
        listed = ", ".join(self.known) if self.known else "(none registered)"
        super().__init__(f"unknown {kind} '{name}'; known {plural or kind + 's'}: {listed}{hint}")


class DuplicateNameError(ValueError):
    """Two different entries registered under one name (a programming error, raised at import)."""


def _same_definition(a: object, b: object) -> bool:
    """True when `a` and `b` are one definition seen twice (the same object, or a module imported again)."""
    if a is b:
        return True
    try:
        if bool(a == b):
            return True
    except Exception:  # an entry whose == is not a truth value
        pass
    key = lambda o: (getattr(o, "__module__", None), getattr(o, "__qualname__", None))  # noqa: E731
    return key(a)[1] is not None and key(a) == key(b)


class Registry(Generic[T]):
    """Name → entry for one pluggable kind, with lazy discovery of the modules that register.

    Args:
        kind: What the entries are, singular, as it reads in messages (``"aggregator"``).
        package: Dotted name of the package whose modules register entries; None for no discovery.
        marker: Only modules whose source contains this text are imported on discovery (usually
            the name of the registering function). None imports every module of the package.
        recursive: Also look in the sub-packages of `package`.
        plural: Plural of `kind` for messages (default: `kind` + ``s``).
        hint: Appended to the unknown-name message (e.g. ``", or torchscript:PATH"``).
    """

    def __init__(
        self,
        kind: str,
        package: str | None = None,
        marker: str | None = None,
        recursive: bool = False,
        plural: str | None = None,
        hint: str = "",
    ) -> None:
        self.kind = kind
        self.package = package
        self.marker = marker
        self.recursive = recursive
        self.plural = plural
        self.hint = hint
        self._entries: dict[str, T] = {}
        self._discovered = package is None
        self._pending: list[tuple[str, str]] | None = None
        self._lock = threading.RLock()

    # registration -----------------------------------------------------------------------------

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` under `name`; without `obj`, return a decorator that does.

        Raises:
            DuplicateNameError: `name` already holds a different entry.
        """
        if obj is None:

            def decorate(o: T) -> T:
                self._add(name, o)
                return o

            return decorate
        self._add(name, obj)
        return obj

    def _add(self, name: str, obj: T) -> None:
        if not isinstance(name, str) or not name:
            raise DuplicateNameError(f"{self.kind} names must be non-empty strings, got {name!r}")
        with self._lock:
            old = self._entries.get(name)
            if old is not None and not _same_definition(old, obj):
                raise DuplicateNameError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj

    def __setitem__(self, name: str, obj: T) -> None:
        """``REG[name] = obj``: `register`, for code written against the dicts registries replaced."""
        self._add(name, obj)

    def unregister(self, name: str) -> None:
        """Remove `name` (for tests that register a temporary entry)."""
        with self._lock:
            self._entries.pop(name, None)

    # lookup -----------------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The entry registered as `name`.

        Raises:
            UnknownNameError: Nothing is registered as `name` (the message lists what is).
        """
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        self.discover(prefer=name)
        if name not in self._entries:
            raise UnknownNameError(self.kind, str(name), sorted(self._entries), self.plural, self.hint)
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order (modules in alphabetical order on discovery)."""
        self.discover()
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        self.discover(prefer=name if isinstance(name, str) else None)
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def keys(self) -> KeysView[str]:
        self.discover()
        return self._entries.keys()

    def values(self) -> ValuesView[T]:
        self.discover()
        return self._entries.values()

    def items(self) -> ItemsView[str, T]:
        self.discover()
        return self._entries.items()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={list(self._entries)})"

    # discovery --------------------------------------------------------------------------------

    def discover(self, prefer: str | None = None) -> None:
        """Import, once, every module of the package that registers entries (see the class docstring).

        Args:
            prefer: A name being looked up: modules whose source quotes it are imported first, and
                discovery stops there once the name is registered (the rest waits for a later call
                that needs every name, such as `names`).
        """
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            if self._pending is None:
                self._pending = self._modules()
            if prefer is not None:
                quoted = (f'"{prefer}"', f"'{prefer}'")
                first = [m for m, text in self._pending if any(q in text for q in quoted)]
                self._import(first)
                if prefer in self._entries:
                    return
            self._discovered = True  # set first: a module that looks a name up while importing must not recurse
            try:
                self._import([m for m, _ in self._pending])
            except BaseException:
                self._discovered = False
                raise

    def _import(self, modules: list[str]) -> None:
        assert self._pending is not None
        for module in modules:
            self._pending = [(m, t) for m, t in self._pending if m != module]
            if module in sys.modules:
                continue
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] == __name__.split(".")[0]:
                    raise
                log.warning("%s: not registered (optional dependency %s is missing)", module, exc.name)

    def _modules(self) -> list[tuple[str, str]]:
        """(dotted name, source) of the package's modules that mention `marker`, sorted by name."""
        assert self.package is not None
        pkg = importlib.import_module(self.package)
        found: list[tuple[str, str]] = []
        for root in getattr(pkg, "__path__", []):
            base = Path(root)
            files = base.rglob("*.py") if self.recursive else base.glob("*.py")
            for f in sorted(files):
                parts = f.relative_to(base).with_suffix("").parts
                if parts[-1] in ("__init__", "__main__") or any(p.startswith(".") for p in parts):
                    continue
                if not all((base.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))):
                    continue  # a folder that is not a package
                try:
                    text = f.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                if self.marker is None or self.marker in text:
                    found.append((".".join((self.package, *parts)), text))
        return found


__all__ = ["DuplicateNameError", "Registry", "UnknownNameError"]
