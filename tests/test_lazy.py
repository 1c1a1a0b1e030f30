"""The lazy package faces (`medwss.lazy.lazy_exports`) list each name three times; the lists must agree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import medwss

ROOT = Path(medwss.__file__).parent


def lazy_faces() -> list[Path]:
    """Every package ``__init__.py`` that sets its ``__getattr__`` from `lazy_exports`."""
    return sorted(p for p in ROOT.rglob("__init__.py") if "lazy_exports(" in p.read_text())


def read_face(path: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(names imported under TYPE_CHECKING → module, the `_LAZY` map, `__all__`) of one package face."""
    tree = ast.parse(path.read_text())
    typed: dict[str, str] = {}
    lazy: dict[str, str] = {}
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, f"{path}: only 'from X import Y' here"
                typed |= {a.asname or a.name: imp.module for a in imp.names}
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if "_LAZY" in names:
            lazy = ast.literal_eval(node.value)
        if "__all__" in names:
            exported = ast.literal_eval(node.value)
    return typed, lazy, exported


def test_there_are_lazy_faces():
    faces = {p.parent.relative_to(ROOT.parent).as_posix() for p in lazy_faces()}
    assert {"medwss/pseudo", "medwss/active", "medwss/transforms", "medwss/embed/pretrain"} <= faces


@pytest.mark.parametrize("path", lazy_faces(), ids=lambda p: p.parent.name)
def test_type_checking_imports_lazy_map_and_all_agree(path):
    typed, lazy, exported = read_face(path)
    assert lazy, f"{path}: no _LAZY map"
    assert typed == lazy, f"{path}: TYPE_CHECKING imports and _LAZY differ: {set(typed) ^ set(lazy)}"
    assert sorted(exported) == sorted(lazy), f"{path}: __all__ and _LAZY differ: {set(exported) ^ set(lazy)}"
    assert len(exported) == len(set(exported)), f"{path}: __all__ lists a name twice"


@pytest.mark.parametrize("path", lazy_faces(), ids=lambda p: p.parent.name)
def test_every_lazy_name_resolves_to_its_module_object(path):
    package = ".".join(path.parent.relative_to(ROOT.parent).parts)
    face = importlib.import_module(package)
    _, lazy, _ = read_face(path)
    for name, module in lazy.items():
        assert getattr(face, name) is getattr(importlib.import_module(module), name), f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute"):
        face.not_a_name  # noqa: B018
