"""Package faces that re-export names without importing them: ``import medwss.pseudo.config`` stays light.

A package's ``__init__`` lists where each re-exported name lives and sets its module ``__getattr__``
(PEP 562) from `lazy_exports`; the name's module is imported the first time the name is used. The
same names are imported under ``TYPE_CHECKING`` for type checkers.

Example:
    >>> _LAZY = {"sinkhorn": "medwss.pseudo.dhr"}
    >>> __getattr__ = lazy_exports(__name__, _LAZY)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for `package` that imports ``names[name]`` on first use of `name`."""

    def __getattr__(name: str) -> object:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
