"""The `medwss` command line: --version, --help everywhere, info on real files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medwss import __version__
from medwss.cli.main import build_parser, main


def _subcommand_paths(parser, prefix=()):  # noqa: ANN001, ANN202
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommand_paths(sub, prefix + (name,))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_progress_bars_are_sparse_in_logs(monkeypatch):
    import os

    env: dict[str, str] = {}
    monkeypatch.setattr(os, "environ", env)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a log file or a pipe
    with pytest.raises(SystemExit):
        main(["--version"])
    assert env == {"TQDM_MININTERVAL": "30"}
    env["TQDM_MININTERVAL"] = "2"  # the user's own setting wins
    with pytest.raises(SystemExit):
        main(["--version"])
    assert env["TQDM_MININTERVAL"] == "2"


def test_help_everywhere(capsys):
    paths = list(_subcommand_paths(build_parser()))
    assert ("info",) in paths and ("manifest", "check") in paths and ("phantom",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0
        assert "usage: medwss" in capsys.readouterr().out


def test_info_json_svs(real, capsys):
    assert main(["info", str(real / "wsi" / "cmu-1-small-region.svs"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "slide" and d["level_count"] == 1
    assert (d["levels"][0]["width"], d["levels"][0]["height"]) == (2220, 2967)
    assert d["mpp"][0] == pytest.approx(0.499)
    assert d["objective_power"] == 20
    assert "label" in d["associated_images"]


def test_info_json_boxes_and_dicom_series(real, capsys):
    main(["info", str(real / "wsi" / "boxes.tiff"), "--json"])
    assert json.loads(capsys.readouterr().out)["level_count"] == 4
    main(["info", str(real / "volumes" / "ct_dicom_series"), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "volume" and d["shape"] == [16, 16, 4]
    assert d["spacing"][:2] == pytest.approx([0.488281, 0.488281]) and d["modality"] == "CT"
    assert d["dtype"] == "int16" and d["intensity_range"][0] < 0


def test_info_text_volume(real, capsys):
    assert main(["info", str(real / "volumes" / "example_ct_sm.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert "122 x 101 x 30" in out and "RAS" in out


@pytest.mark.parametrize("name", ["broken.svs", "unopenable.tiff"])
def test_info_bad_slide_exits_2_with_one_line(real, name):
    proc = subprocess.run(
        [sys.executable, "-m", "medwss.cli.main", "info", str(real / "wsi" / name)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in proc.stderr


def test_debug_shows_traceback(real):
    proc = subprocess.run(
        [sys.executable, "-m", "medwss.cli.main", "--debug", "info", str(real / "wsi" / "broken.svs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_manifest_check_exit_codes(tmp_path, capsys):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    good = tmp_path / "good.csv"
    good.write_text("case_id,patient_id,site,modality,image,split\na,p,s,CT,a.nii.gz,train\n")
    assert main(["manifest", "check", str(good)]) == 0
    assert "OK, 1 cases" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("case_id,patient_id,site,modality,image,split\na,p,s,CT,a.nii.gz,train\nb,p,s,CT,zz.nii.gz,test\n")
    assert main(["manifest", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "zz.nii.gz" in err and "several splits" in err


def test_info_batch_reports_failures_and_goes_on(real, capsys):
    wsi = real / "wsi"
    paths = [wsi / "cmu-1-small-region.svs", wsi / "unreadable.svs", wsi / "broken.svs", wsi / "small.svs"]
    assert main(["info", "--check", "--json", *map(str, paths)]) == 2
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [("error" in r) for r in results] == [False, True, True, False]
    assert "unreadable.svs" in results[1]["error"] and "broken.svs" in results[2]["error"]
    assert "2 of 4 file(s) failed" in captured.err
    # without --check, the corrupt tiles of unreadable.svs go unnoticed (opening reads no pixels)
    assert main(["info", str(wsi / "unreadable.svs")]) == 0


def test_info_counts_nan_voxels(tmp_path, capsys):
    import numpy as np

    from medwss.io import save_nifti

    arr = np.zeros((3, 3, 3), np.float32)
    arr[0, 0, :2] = np.nan
    save_nifti(arr, tmp_path / "n.nii.gz")
    assert main(["info", "--json", str(tmp_path / "n.nii.gz")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["nan_voxels"] == 2 and d["intensity_range"] == [0.0, 0.0]
