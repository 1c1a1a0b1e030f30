"""The one error path: exit codes of batches, one line for unexpected errors, library noise off stderr, strict JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medwss.cli import info
from medwss.cli.batch import finish
from medwss.cli.main import _write_log, library_noise_routed, main
from medwss.io.atomic import write_json
from medwss.jobs import JobSummary


def test_finish_exit_codes_and_summary(capsys):
    assert finish("tile", JobSummary(done=8, skipped=2)) == 0
    assert capsys.readouterr().err == "medwss tile: 8 done, 2 skipped (already done), 0 failed\n"
    assert finish("tile", JobSummary(done=8, skipped=2, failed=1, log=Path("out/failures.csv"))) == 3
    assert capsys.readouterr().err == "medwss tile: 8 done, 2 skipped (already done), 1 failed; see out/failures.csv\n"
    assert finish("evaluate", JobSummary(failed=2)) == 2 and finish("x", JobSummary(skipped=1, failed=1)) == 3


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, tmp_path, capsys):
    def boom(args):  # noqa: ANN001, ANN202
        raise RuntimeError("kaputt\nsecond line")

    monkeypatch.setattr(info, "run", boom)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: kaputt second line" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        main(["--debug", "info", str(tmp_path)])

    def missing(args):  # noqa: ANN001, ANN202
        open(tmp_path / "nope" / "x.bin")  # noqa: SIM115

    monkeypatch.setattr(info, "run", missing)
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"medwss: error: {tmp_path / 'nope' / 'x.bin'}: No such file or directory\n"


def test_library_log_lines_kept_off_stderr_and_logged(tmp_path, capsys):
    with library_noise_routed(debug=False) as collect:
        logging.getLogger("tifffile").warning("TiffPage 0: invalid tag")
        logging.getLogger("nibabel.global").error("pixdim[0] invalid")
    assert capsys.readouterr().err == ""
    assert len(collect.lines) == 2 and "TiffPage 0" in collect.lines[0]

    class Args:
        out = str(tmp_path)

    _write_log(Args(), collect.lines)  # type: ignore[arg-type]
    assert "pixdim[0] invalid" in (tmp_path / "medwss.log").read_text()
    assert logging.getLogger("tifffile").handlers == []  # restored


def test_json_outputs_are_strict(tmp_path):
    def strict(name: str) -> None:
        raise AssertionError(name)

    write_json(tmp_path / "m.json", {"auc": float("nan"), "x": [1.0, float("-inf")], "s": "NaN"})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=strict) == {
        "auc": None,
        "x": [1.0, None],
        "s": "NaN",
    }
    import numpy as np

    from medwss.io.annotations import write_geojson

    square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], dtype=float)
    write_geojson([square], tmp_path / "d.geojson", measurements=[{"score": float("nan")}])
    doc = json.loads((tmp_path / "d.geojson").read_text(), parse_constant=strict)
    assert doc["features"][0]["properties"]["measurements"] == {"score": None}

    write_json(tmp_path / "n.json", {"a": np.float32("nan"), "b": np.arange(2), "c": tmp_path})
    assert json.loads((tmp_path / "n.json").read_text(), parse_constant=strict) == {
        "a": None,
        "b": [0, 1],
        "c": str(tmp_path),
    }


def test_volume_dimensions_beyond_a_singleton_refused(tmp_path):
    import nibabel as nib
    import numpy as np

    from medwss.errors import InvalidDataError
    from medwss.io.volumes import load_volume

    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1, 3), np.float32), np.eye(4)), str(tmp_path / "s.nii.gz"))
    assert load_volume(tmp_path / "s.nii.gz", channels=True).shape == (4, 4, 4, 3)
    with pytest.raises(InvalidDataError, match=r"s.nii.gz: image has 3 channels"):  # pipelines need 3D
        load_volume(tmp_path / "s.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2, 3), np.float32), np.eye(4)), str(tmp_path / "t.nii.gz"))
    with pytest.raises(InvalidDataError, match=r"t.nii.gz: image is 5D"):
        load_volume(tmp_path / "t.nii.gz")
