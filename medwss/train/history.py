"""``history.json``: one row per round, rewritten atomically after each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medwss.io.atomic import write_json


def write_history(path: str | Path, history: list[dict[str, Any]]) -> Path:
    """Write the rows as indented JSON (NaN kept as JSON's ``NaN``, as Python reads it back)."""
    return write_json(path, history, indent=1)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    return json.loads(Path(path).read_text())
