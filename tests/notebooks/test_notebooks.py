"""Every notebook runs end to end with tiny settings (the cell tagged `parameters` is overridden).

The notebooks are split over two test files of about equal run time (this one and
`test_notebooks_scribble.py`), so `pytest -n 2 --dist loadfile` runs them on both workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
HEAVY = ("05_scribble_prostate.ipynb", "06_active_learning.ipynb")
"""Run by `test_notebooks_scribble.py` (about half of the notebooks' run time)."""
TINY = {"N": 2, "SCALE": 0.5, "SEED": 0}


def run_notebook(path: Path, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert params, f"{path.name} has no cell tagged 'parameters'"
    lines = [f"OUT = {str(tmp_path / 'out')!r}"] + [f"{k} = {v!r}" for k, v in TINY.items()]
    params[0].source = "\n".join(lines)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()


LIGHT = [p for p in NOTEBOOKS if p.name not in HEAVY]


@pytest.mark.slow
@pytest.mark.parametrize("path", LIGHT, ids=[p.name for p in LIGHT])
def test_notebook_runs(path, tmp_path):
    run_notebook(path, tmp_path)
