"""`medwss pseudo <method>`: a case that fails after loading is skipped and recorded; the rest are written, exit 3."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from medwss.cli.main import main
from medwss.jobs import read_failures


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict[str, str]]:
    from medwss.data.phantoms import generate

    man = generate("ct", tmp_path_factory.mktemp("ct"), n=3, seed=0, scale=0.3, progress=False)
    out = list(csv.DictReader(man.open()))
    for r in out:
        r["image"], r["mask"] = str(man.parent / r["image"]), str(man.parent / r["mask"])
    return out


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _labels(out: Path) -> set[str]:
    return {p.name.removesuffix(".nii.gz") for p in (out / "labels").glob("*.nii.gz")}


def test_box_skips_a_case_whose_boxes_are_broken(rows, tmp_path, capsys):
    boxes = [{"case_id": r["case_id"], "label": 1, "box": [2, 2, 0, 12, 12, 3]} for r in rows]
    boxes[1] = {"case_id": rows[1]["case_id"], "label": 1}  # no corners: fails after loading, mid-batch
    bfile = tmp_path / "boxes.json"
    bfile.write_text(json.dumps(boxes))
    out = tmp_path / "o"
    argv = ["pseudo", "box", str(_manifest(tmp_path / "m.csv", rows)), "--out", str(out), "--boxes", str(bfile)]
    assert main(argv + ["--quiet"]) == 3
    cap = capsys.readouterr()
    assert f"skipped {rows[1]['case_id']}" in cap.out and "medwss pseudo box: 2 done, 1 failed; see" in cap.err
    assert "Traceback" not in cap.err
    assert _labels(out) == {rows[0]["case_id"], rows[2]["case_id"]}
    (fail,) = read_failures(out / "failures.csv")
    assert fail["case_id"] == rows[1]["case_id"] and "box" in fail["message"] and fail["stage"]
    run = json.loads((out / "run.json").read_text())
    assert run["metrics"]["failed"][0].startswith(rows[1]["case_id"])


def test_box_skips_a_corrupt_image_and_a_failing_write(rows, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(Path(rows[0]["image"]).read_bytes()[:300]))  # truncated
    more = [rows[0], {**rows[1], "case_id": "corrupt", "image": str(bad)}, *rows[1:]]
    import medwss.viz.overlay as overlay

    real = overlay.volume_montage_png

    def flaky(image, heat, path, **kw):  # the preview of one case fails after its labels are computed
        if Path(path).stem == rows[2]["case_id"]:
            raise OSError("disk full")
        return real(image, heat, path, **kw)

    monkeypatch.setattr(overlay, "volume_montage_png", flaky)
    out = tmp_path / "o"
    assert main(["pseudo", "box", str(_manifest(tmp_path / "m.csv", more)), "--out", str(out), "--quiet"]) == 3
    assert "medwss pseudo box: 2 done, 2 failed; see" in capsys.readouterr().err
    rows_ = {r["case_id"]: r for r in read_failures(out / "failures.csv")}
    assert (rows_["corrupt"]["stage"], rows_[rows[2]["case_id"]]["stage"]) == ("load", "write")
    failed = {k: r["message"] for k, r in rows_.items()}
    assert set(failed) == {"corrupt", rows[2]["case_id"]} and "disk full" in failed[rows[2]["case_id"]]
    assert {rows[0]["case_id"], rows[1]["case_id"]} <= _labels(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["cases"]) == {rows[0]["case_id"], rows[1]["case_id"]}


def test_dhr_skips_a_case_without_tags(rows, tmp_path, capsys):
    more = [dict(r) for r in rows]
    more[1]["mask"] = ""  # no mask: no slice tags or points for this case
    out = tmp_path / "o"
    argv = ["pseudo", "dhr", str(_manifest(tmp_path / "m.csv", more)), "--out", str(out), "--downsample", "3"]
    assert main(argv + ["--quiet"]) == 3
    assert "has no mask" in read_failures(out / "failures.csv")[0]["message"]
    assert _labels(out) == {rows[0]["case_id"], rows[2]["case_id"]}
    capsys.readouterr()


def test_library_calls_still_raise(rows):
    from medwss.errors import InvalidDataError
    from medwss.jobs import Job
    from medwss.pseudo.config import AgmmPseudoConfig
    from medwss.pseudo.workflow import run_agmm, slice_case

    cfg = AgmmPseudoConfig(downsample=4)
    case = slice_case(_case(rows[0]), cfg)
    case.gts = None
    with pytest.raises(InvalidDataError, match="neither a scribble nor a mask"):
        run_agmm([case], cfg, offline=True)
    job = Job(None)
    with job.active():
        assert run_agmm([case], cfg, offline=True) == [None]
    (row,) = job.summary().failures
    assert row["case_id"] == case.case_id and row["error_class"] == "InvalidDataError" and row["stage"]


def _case(row: dict[str, str]):  # noqa: ANN202
    import tempfile

    from medwss.data.manifest import load_manifest

    return load_manifest(_manifest(Path(tempfile.mkdtemp()) / "m.csv", [row])).cases[0]
