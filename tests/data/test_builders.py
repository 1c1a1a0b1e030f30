"""Manifest builders on tiny fake copies of each public dataset, laid out as distributed."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medwss.data.builders import BUILDERS, build_manifest, build_rows, list_datasets
from medwss.data.manifest import check_manifest, load_manifest
from medwss.errors import FileNotFound, InvalidDataError, MedwssError


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_nifti(path: Path, values: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((4, 4, 2), dtype=np.uint8)
    data.flat[: len(values)] = values
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {str(r["case_id"]): r for r in rows}


def written_ok(dataset: str, root: Path, tmp_path: Path) -> list[dict[str, str]]:
    """Write the manifest beside the data, check it, and return its rows as strings."""
    out = build_manifest(dataset, root, tmp_path / "out" / f"{dataset}.csv")
    assert check_manifest(out) == []
    assert len(load_manifest(out)) > 0
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def test_registry_lists_every_dataset():
    assert list_datasets() == sorted(["acdc", "camelyon16", "kits", "mosmed", "picai", "prostate158"])
    assert set(BUILDERS) == set(list_datasets())


def test_unknown_dataset_lists_known(tmp_path):
    with pytest.raises(MedwssError, match="known datasets: acdc, camelyon16"):
        build_manifest("nope", tmp_path, tmp_path / "m.csv")


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(FileNotFound):
        build_rows("mosmed", tmp_path / "absent")
    with pytest.raises(InvalidDataError, match=r"no mosmed cases found; expected the layout studies/CT-") as err:
        build_rows("mosmed", tmp_path)
    assert err.value.path == str(tmp_path)
    with pytest.raises(InvalidDataError, match="root folder"):
        build_rows("acdc", touch(tmp_path / "file.txt"))


def test_camelyon16(tmp_path):
    root = tmp_path / "CAMELYON16"
    touch(root / "training" / "normal" / "normal_001.tif")
    touch(root / "training" / "tumor" / "tumor_001.tif")
    touch(root / "training" / "tumor" / "tumor_002.tif")
    touch(root / "training" / "lesion_annotations" / "tumor_001.xml")
    touch(root / "annotations" / "tumor_002.xml")
    for i in (1, 2, 3):
        touch(root / "testing" / "images" / f"test_00{i}.tif")
    touch(root / "testing" / "lesion_annotations" / "test_001.xml")
    touch(root / "testing" / "evaluation" / "reference.csv", "test_001,Tumor,Macro,Primary\ntest_002,Normal\n")
    rows = BUILDERS["camelyon16"](root)
    assert [r["case_id"] for r in rows] == ["normal_001", "test_001", "test_002", "test_003", "tumor_001", "tumor_002"]
    got = by_id(rows)
    assert got["normal_001"]["label"] == 0 and got["normal_001"]["split"] == "train"
    assert got["tumor_001"]["label"] == 1
    assert got["tumor_001"]["meta_annotation"] == root / "training" / "lesion_annotations" / "tumor_001.xml"
    assert got["tumor_002"]["meta_annotation"] == root / "annotations" / "tumor_002.xml"
    assert got["test_001"]["label"] == 1 and got["test_001"]["split"] == "test"
    assert got["test_001"]["meta_metastasis_size"] == "Macro"
    assert got["test_002"]["label"] == 0 and got["test_002"]["meta_annotation"] is None
    assert got["test_003"]["label"] is None  # not in reference.csv
    assert all(r["patient_id"] == r["case_id"] and r["modality"] == "WSI" for r in rows)
    assert all(r["site"] == "camelyon16" for r in rows)
    csv_rows = written_ok("camelyon16", root, tmp_path)
    assert csv_rows[0]["image"].endswith("CAMELYON16/training/normal/normal_001.tif")


def make_picai(root: Path) -> None:
    for fold, pid, sid in ((0, "10000", "1000000"), (0, "10000", "1000001"), (1, "10001", "1000002")):
        for seq in ("t2w", "adc", "hbv", "cor", "sag"):
            touch(root / f"picai_public_images_fold{fold}" / pid / f"{pid}_{sid}_{seq}.mha")
    touch(root / "picai_public_images_fold2" / "10002" / "10002_1000003_t2w.mha")  # no adc/hbv: skipped
    labels = root / "picai_labels"
    touch(labels / "csPCa_lesion_delineations" / "human_expert" / "resampled" / "10000_1000000.nii.gz")
    touch(labels / "csPCa_lesion_delineations" / "AI" / "Bosma22a" / "10001_1000002.nii.gz")
    touch(
        labels / "clinical_information" / "marksheet.csv",
        "patient_id,study_id,mri_date,case_ISUP,case_csPCa,center\n"
        "10000,1000000,2019-01-01,3,YES,RUMC\n"
        "10000,1000001,2020-01-01,0,NO,RUMC\n"
        "10001,1000002,2019-01-01,1,NO,ZGT\n",
    )


def test_picai(tmp_path, caplog):
    root = tmp_path / "picai"
    make_picai(root)
    with caplog.at_level(logging.WARNING, logger="medwss.data.builders"):
        rows = BUILDERS["picai"](root)
    assert "10002_1000003: missing adc, hbv" in caplog.text
    assert [r["case_id"] for r in rows] == ["10000_1000000", "10000_1000001", "10001_1000002"]
    got = by_id(rows)
    first = got["10000_1000000"]
    assert first["patient_id"] == "10000" and first["label"] == 1 and first["site"] == "RUMC"
    assert first["image_t2w"].name == "10000_1000000_t2w.mha" and first["image_hbv"].name.endswith("_hbv.mha")
    assert "image_cor" not in first and first["split"] is None
    assert first["mask"].parent.name == "resampled" and first["meta_mask_source"] == "human_expert"
    assert got["10000_1000001"]["label"] == 0 and got["10000_1000001"]["mask"] is None
    assert got["10001_1000002"]["meta_fold"] == "1" and got["10001_1000002"]["site"] == "ZGT"
    assert got["10001_1000002"]["meta_mask_source"] == "AI"
    csv_rows = written_ok("picai", root, tmp_path)
    assert [r["split"] for r in csv_rows] == ["", "", ""]
    assert {"image_t2w", "image_adc", "image_hbv", "meta_fold"} <= set(csv_rows[0])


def test_picai_without_marksheet(tmp_path):
    root = tmp_path / "picai"
    make_picai(root)
    (root / "picai_labels" / "clinical_information" / "marksheet.csv").unlink()
    rows = BUILDERS["picai"](root)
    assert all(r["label"] is None and r["site"] == "picai" for r in rows)


def make_p158_case(folder: Path, tumour: bool) -> None:
    for name in ("t2", "adc", "dwi", "t2_anatomy_reader1"):
        touch(folder / f"{name}.nii.gz")
    if tumour:
        touch(folder / "adc_tumor_reader1.nii.gz")


def test_prostate158_with_csvs(tmp_path):
    root = tmp_path / "p158"
    train = root / "prostate158_train"
    make_p158_case(train / "train" / "020", tumour=True)
    make_p158_case(train / "train" / "021", tumour=False)
    make_p158_case(train / "train" / "022", tumour=True)
    touch(train / "train" / "023" / "t2.nii.gz")  # no adc/dwi: skipped
    touch(train / "train.csv", "ID,t2,adc,dwi\n20,train/020/t2.nii.gz,,\n21,train/021/t2.nii.gz,,\n")
    touch(train / "valid.csv", "ID,t2,adc,dwi\n22,train/022/t2.nii.gz,,\n")
    make_p158_case(root / "prostate158_test" / "test" / "100", tumour=True)
    touch(root / "prostate158_test" / "test.csv", "ID,t2\n100,test/100/t2.nii.gz\n")
    rows = BUILDERS["prostate158"](root)
    assert [r["case_id"] for r in rows] == ["020", "021", "022", "100"]
    got = by_id(rows)
    assert [got[k]["split"] for k in ("020", "021", "022", "100")] == ["train", "train", "val", "test"]
    assert [got[k]["label"] for k in ("020", "021", "022", "100")] == [1, 0, 1, 1]
    assert got["020"]["mask"].name == "adc_tumor_reader1.nii.gz" and got["021"]["mask"] is None
    assert got["020"]["meta_zones"].name == "t2_anatomy_reader1.nii.gz"
    assert got["020"]["image_dwi"].name == "dwi.nii.gz" and got["020"]["site"] == "prostate158"
    csv_rows = written_ok("prostate158", root, tmp_path)
    assert csv_rows[0]["case_id"] == "020"  # leading zeros kept


def test_prostate158_without_csvs(tmp_path):
    root = tmp_path / "prostate158_train"
    make_p158_case(root / "train" / "001", tumour=False)
    make_p158_case(root / "valid" / "002", tumour=True)
    make_p158_case(root / "test" / "003", tumour=True)
    got = by_id(BUILDERS["prostate158"](root))
    assert {k: r["split"] for k, r in got.items()} == {"001": "train", "002": "val", "003": "test"}


def test_mosmed(tmp_path):
    root = tmp_path / "MosMed"
    base = root / "COVID19_1110"
    touch(base / "studies" / "CT-0" / "study_0001.nii.gz")
    touch(base / "studies" / "CT-1" / "study_0255.nii.gz")
    touch(base / "studies" / "CT-4" / "study_1110.nii.gz")
    touch(base / "studies" / "CT-4" / "notes.txt")
    touch(base / "masks" / "study_0255_mask.nii.gz")
    touch(base / "dataset_registry.xlsx")
    rows = BUILDERS["mosmed"](root)
    assert [r["case_id"] for r in rows] == ["study_0001", "study_0255", "study_1110"]
    assert [r["label"] for r in rows] == [0, 1, 1]
    assert [r["meta_grade"] for r in rows] == ["CT-0", "CT-1", "CT-4"]
    assert [r["mask"] is not None for r in rows] == [False, True, False]
    assert all(r["modality"] == "CT" and r["site"] == "mosmed" for r in rows)
    written_ok("mosmed", base, tmp_path)


@pytest.mark.parametrize("layout", ["kits19", "kits23"])
def test_kits(tmp_path, layout):
    root = tmp_path / layout
    cases = root / ("data" if layout == "kits19" else "dataset")
    touch(cases / ("kits.json" if layout == "kits19" else "kits23.json"), "[]")
    write_nifti(cases / "case_00000" / "imaging.nii.gz", [0])
    write_nifti(cases / "case_00000" / "segmentation.nii.gz", [0, 1, 2])
    write_nifti(cases / "case_00001" / "imaging.nii.gz", [0])
    write_nifti(cases / "case_00001" / "segmentation.nii.gz", [0, 1, 3])
    write_nifti(cases / "case_00002" / "imaging.nii.gz", [0])  # no segmentation (test case)
    touch(cases / "case_00003" / "segmentation.nii.gz")  # no imaging: skipped
    rows = BUILDERS["kits"](root)
    assert [r["case_id"] for r in rows] == ["case_00000", "case_00001", "case_00002"]
    assert [r["label"] for r in rows] == [1, 0, None]
    assert rows[0]["mask"].name == "segmentation.nii.gz" and rows[2]["mask"] is None
    csv_rows = written_ok("kits", root, tmp_path)
    assert [r["label"] for r in csv_rows] == ["1", "0", ""]


def test_kits21_majority_and_unreadable(tmp_path):
    write_nifti(tmp_path / "case_00000" / "imaging.nii.gz", [0])
    write_nifti(tmp_path / "case_00000" / "aggregated_MAJ_seg.nii.gz", [2])
    write_nifti(tmp_path / "case_00001" / "imaging.nii.gz", [0])
    touch(tmp_path / "case_00001" / "segmentation.nii.gz", "not a nifti")
    rows = BUILDERS["kits"](tmp_path)
    assert rows[0]["label"] == 1 and rows[0]["mask"].name == "aggregated_MAJ_seg.nii.gz"
    assert rows[1]["label"] is None


def make_acdc_patient(folder: Path, ed: int, es: int, gt: bool = True, group: str = "DCM") -> None:
    pid = folder.name
    touch(folder / "Info.cfg", f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n")
    touch(folder / f"{pid}_4d.nii.gz")
    for f in (ed, es):
        touch(folder / f"{pid}_frame{f:02d}.nii.gz")
        if gt:
            touch(folder / f"{pid}_frame{f:02d}_gt.nii.gz")


def test_acdc(tmp_path):
    root = tmp_path / "ACDC"
    make_acdc_patient(root / "database" / "training" / "patient001", 1, 12)
    make_acdc_patient(root / "database" / "training" / "patient002", 1, 12, group="NOR")
    make_acdc_patient(root / "database" / "testing" / "patient101", 1, 14, gt=False)
    touch(root / "database" / "training" / "patient003" / "patient003_frame01.nii.gz")  # no Info.cfg
    rows = BUILDERS["acdc"](root)
    ids = [r["case_id"] for r in rows]
    assert ids == [
        "patient001_frame01",
        "patient001_frame12",
        "patient002_frame01",
        "patient002_frame12",
        "patient101_frame01",
        "patient101_frame14",
    ]
    got = by_id(rows)
    assert got["patient001_frame01"]["meta_phase"] == "ED" and got["patient001_frame12"]["meta_phase"] == "ES"
    assert got["patient001_frame12"]["patient_id"] == "patient001"
    assert got["patient001_frame12"]["mask"].name == "patient001_frame12_gt.nii.gz"
    assert got["patient002_frame01"]["meta_group"] == "NOR"
    assert got["patient101_frame14"]["split"] == "test" and got["patient101_frame14"]["mask"] is None
    assert all("label" not in r and r["modality"] == "MR" and r["site"] == "acdc" for r in rows)
    csv_rows = written_ok("acdc", root, tmp_path)
    assert "label" not in csv_rows[0]


def test_acdc_flat_training_folder(tmp_path):
    make_acdc_patient(tmp_path / "training" / "patient001", 1, 12)
    rows = build_rows("ACDC", tmp_path)
    assert {r["split"] for r in rows} == {"train"}
