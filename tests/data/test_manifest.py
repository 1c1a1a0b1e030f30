"""Manifest validation: every problem reported at once; relative paths; patient-level leakage."""

from __future__ import annotations

from pathlib import Path

import pytest

from medwss.data import check_manifest, load_manifest, write_manifest
from medwss.errors import FileNotFound, ManifestError


def _files(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


def test_valid_manifest_round_trip(tmp_path):
    _files(tmp_path, "img/a.nii.gz", "img/b.nii.gz", "img/a_mask.nii.gz")
    rows = [
        {
            "case_id": "a",
            "patient_id": "p1",
            "site": "s1",
            "modality": "CT",
            "image": tmp_path / "img/a.nii.gz",
            "label": 1,
            "mask": tmp_path / "img/a_mask.nii.gz",
            "split": "train",
            "meta_note": "x",
        },
        {
            "case_id": "b",
            "patient_id": "p2",
            "site": "s2",
            "modality": "CT",
            "image": tmp_path / "img/b.nii.gz",
            "label": 0,
            "mask": None,
            "split": "test",
        },
    ]
    path = write_manifest(rows, tmp_path / "m.csv")
    text = path.read_text()
    assert "img/a.nii.gz" in text and str(tmp_path) not in text  # relative paths
    assert check_manifest(path) == []
    m = load_manifest(path)
    assert [c.case_id for c in m] == ["a", "b"]
    assert m.cases[0].image == tmp_path / "img/a.nii.gz"
    assert m.cases[0].mask == tmp_path / "img/a_mask.nii.gz" and m.cases[1].mask is None
    assert m.cases[0].label == 1 and m.cases[0].meta == {"note": "x"}
    assert [c.case_id for c in m.split("test")] == ["b"]


def test_multichannel_columns(tmp_path):
    _files(tmp_path, "t2.nii.gz", "adc.nii.gz")
    path = tmp_path / "m.csv"
    path.write_text("case_id,patient_id,site,modality,image_t2,image_adc\nc,p,s,MR,t2.nii.gz,adc.nii.gz\n")
    m = load_manifest(path)
    assert m.channels == ["t2", "adc"]
    assert m.cases[0].images["adc"] == tmp_path / "adc.nii.gz"


def test_every_problem_reported_at_once(tmp_path):
    _files(tmp_path, "a.nii.gz")
    path = tmp_path / "bad.csv"
    path.write_text(
        "case_id,patient_id,site,modality,image,label,split,colour\n"
        "a,p1,s,CT,a.nii.gz,1,train,red\n"
        "a,p1,s,CT,a.nii.gz,yes,test,red\n"
        "c,p2,s,XX,missing.nii.gz,-1,holdout,blue\n"
    )
    problems = check_manifest(path)
    text = "\n".join(problems)
    assert "unknown column 'colour'" in text
    assert "duplicate case_id" in text
    assert "label 'yes'" in text and "label '-1'" in text
    assert "modality 'XX'" in text
    assert "split 'holdout'" in text
    assert "missing.nii.gz" in text
    assert "patient 'p1' is in several splits" in text
    assert len(problems) == 8
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert err.value.problems == problems and "bad.csv" in str(err.value)


def test_missing_columns_and_empty(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("case_id,site\n")
    problems = check_manifest(path)
    assert "missing required column 'patient_id'" in problems
    assert any("no image column" in p for p in problems)
    assert "no cases" in problems


def test_missing_manifest_file(tmp_path):
    with pytest.raises(FileNotFound):
        check_manifest(tmp_path / "nope.csv")


def test_case_ids_that_leave_the_output_folder_are_refused(tmp_path):
    _files(tmp_path, "a.nii.gz")
    path = tmp_path / "m.csv"
    path.write_text(
        "case_id,patient_id,site,modality,image\n"
        "../../esc,p1,s,CT,a.nii.gz\n"
        "/abs/x,p2,s,CT,a.nii.gz\n"
        "ok-1_a.b,p3,s,CT,a.nii.gz\n"
        "..,p4,s,CT,a.nii.gz\n"
        "a\\b,p5,s,CT,a.nii.gz\n"
        f"{'x' * 201},p6,s,CT,a.nii.gz\n"
    )
    problems = check_manifest(path)
    assert len(problems) == 5  # one line per bad row; the plain id passes
    assert problems[0].startswith("line 2 ('../../esc'): case_id '../../esc' contains '/', '..'")
    assert problems[1].startswith("line 3 ('/abs/x'): case_id '/abs/x' contains '/'")
    assert problems[2].startswith("line 5 ('..'): case_id '..' is not a file name")
    assert "line 6" in problems[3] and "'\\\\'" in problems[3]
    assert "line 7" in problems[4] and "201 bytes" in problems[4]
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert err.value.problems == problems


def test_case_ids_with_nul_or_control_characters_are_refused(tmp_path):
    _files(tmp_path, "a.nii.gz")
    path = tmp_path / "m.csv"
    path.write_bytes(
        b"case_id,patient_id,site,modality,image\na\x00b,p1,s,CT,a.nii.gz\nc\td,p2,s,CT,a.nii.gz\n.,p3,s,CT,a.nii.gz\n"
    )
    problems = check_manifest(path)
    assert len(problems) == 3 and "'\\x00'" in problems[0] and "'\\t'" in problems[1] and "line 4" in problems[2]
