"""The notebooks (and their build scripts) use the Python API, not the command line (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "notebooks"
FILES = sorted(ROOT.glob("*.ipynb")) + sorted((ROOT / "build").glob("*.py"))


def test_there_are_notebooks():
    assert len([p for p in FILES if p.suffix == ".ipynb"]) >= 7


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_no_command_line_calls(path):
    text = path.read_text(encoding="utf-8")
    assert "medwss.cli" not in text, f"{path.name} drives the CLI; call the library function the command calls"
