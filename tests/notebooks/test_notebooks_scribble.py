"""The two longest notebooks (see `test_notebooks.py`), in their own file so they run beside the others."""

from __future__ import annotations

import pytest

from tests.notebooks.test_notebooks import HEAVY, NOTEBOOKS, run_notebook

PATHS = [p for p in NOTEBOOKS if p.name in HEAVY]


def test_the_heavy_notebooks_exist():
    assert [p.name for p in PATHS] == sorted(HEAVY)


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_runs(path, tmp_path):
    run_notebook(path, tmp_path)
