"""nnU-Net round trip: export a manifest as an nnU-Net v2 raw dataset (ignore label), read it back; MSD import."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medwss.cli import nnunet as nnunet_cli
from medwss.data.labels import load_label_map, save_label_map
from medwss.data.manifest import load_manifest, write_manifest
from medwss.errors import ConfigError, InvalidDataError
from medwss.io import load_volume, save_nifti
from medwss.io.nnunet import dataset_folder_name, export_manifest, import_dataset, label_values, list_cases


def main(argv: list[str]) -> int:
    """The two commands, parsed as `medwss` parses them (`medwss.cli.main` registers the same functions)."""
    parser = argparse.ArgumentParser(prog="medwss")
    sub = parser.add_subparsers()
    nnunet_cli.register(sub)
    nnunet_cli.register_import(sub.add_parser("manifest").add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 1.5, 0, 5.0], [0, 0, 3.0, 20.0], [0, 0, 0, 1]])


def _cases(tmp_path: Path) -> Path:
    """Three tiny cases (train, val, test): int16 image, uint8 mask 0..2, int16 scribble with -1."""
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(("train", "val", "test")):
        img = rng.integers(-100, 300, (12, 10, 4)).astype(np.int16)
        mask = np.zeros((12, 10, 4), np.uint8)
        mask[3:8, 2:6] = 1
        mask[5:7, 3:5, 1:3] = 2
        scrib = np.full(mask.shape, -1, np.int16)
        scrib[4, 2:6, :] = mask[4, 2:6, :]
        scrib[0, :, i % 4] = 0
        save_nifti(img, tmp_path / f"c{i}_img.nii.gz", AFFINE)
        save_nifti(mask, tmp_path / f"c{i}_mask.nii.gz", AFFINE)
        save_label_map(scrib, tmp_path / f"c{i}_scrib.nii.gz", AFFINE)
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "site": "s", "modality": "MR",
                     "image": tmp_path / f"c{i}_img.nii.gz", "mask": tmp_path / f"c{i}_mask.nii.gz",
                     "scribble": tmp_path / f"c{i}_scrib.nii.gz", "split": split})  # fmt: skip
    return write_manifest(rows, tmp_path / "m.csv")


def test_export_scribbles_then_import_gives_the_same_labels(tmp_path, capsys):
    src = _cases(tmp_path)
    raw = tmp_path / "nnUNet_raw"
    argv = ["export", "nnunet", str(src), "--out", str(raw), "--dataset-id", "7", "--name", "Tiny", "--quiet"]
    assert main(argv) == 0
    ds = raw / "Dataset007_Tiny"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "class1": 1, "class2": 2, "ignore": 3}
    assert (meta["channel_names"], meta["numTraining"], meta["file_ending"]) == ({"0": "MR"}, 2, ".nii.gz")
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["c0_0000.nii.gz", "c1_0000.nii.gz"]
    assert [p.name for p in (ds / "imagesTs").iterdir()] == ["c2_0000.nii.gz"]
    assert json.loads((ds / "splits_final.json").read_text()) == [{"train": ["c0"], "val": ["c1"]}]
    lab = nib.load(str(ds / "labelsTr" / "c0.nii.gz"))
    scrib = load_label_map(tmp_path / "c0_scrib.nii.gz").array
    arr = np.asarray(lab.dataobj)
    assert lab.get_data_dtype() == np.uint8 and np.array_equal(arr, np.where(scrib == -1, 3, scrib))
    assert np.array_equal(lab.affine, nib.load(str(ds / "imagesTr" / "c0_0000.nii.gz")).affine)
    assert (ds / "imagesTr" / "c0_0000.nii.gz").read_bytes() == (tmp_path / "c0_img.nii.gz").read_bytes()
    ts = np.asarray(nib.load(str(ds / "labelsTs" / "c2.nii.gz")).dataobj)
    assert np.array_equal(ts, load_volume(tmp_path / "c2_mask.nii.gz").array)  # dense test mask, no ignore

    out = tmp_path / "back" / "m.csv"
    assert main(["manifest", "from-nnunet", str(ds), "--out", str(out), "--quiet"]) == 0
    back = {c.case_id: c for c in load_manifest(out)}
    orig = {c.case_id: c for c in load_manifest(src)}
    for cid in ("c0", "c1"):
        b, o = back[cid], orig[cid]
        assert (b.patient_id, b.site, b.modality, b.split, b.mask) == (o.patient_id, "s", "MR", o.split, None)
        assert np.array_equal(load_label_map(b.scribble).array, load_label_map(o.scribble).array)  # -1 <-> 3
        assert np.array_equal(load_volume(b.image).array, load_volume(o.image).array)
    assert back["c2"].split == "test" and back["c2"].scribble is None
    assert np.array_equal(load_label_map(back["c2"].mask).array, load_label_map(orig["c2"].mask).array)
    capsys.readouterr()

    # Dense masks: no ignore label; a case without its label is skipped and reported, the others exported.
    rows = _rows(src)
    rows[0]["mask"] = ""
    write_manifest(rows, tmp_path / "m2.csv")  # type: ignore[arg-type]
    res = export_manifest(tmp_path / "m2.csv", raw, 8, "Dense", labels="mask", splits=["train", "val"], progress=False)
    assert res.ignore is None and res.training == ["c1"] and res.test == []
    assert res.skipped == ["c0: case c0 has no mask in the manifest"] and res.failures is not None
    assert "ignore" not in json.loads((res.folder / "dataset.json").read_text())["labels"]
    assert not (res.folder / "splits_final.json").exists()
    again = export_manifest(src, raw, 7, "Tiny", splits=["train"], progress=False)  # same folder, fewer cases
    assert [p.name for p in (again.folder / "imagesTr").iterdir()] == ["c0_0000.nii.gz"]
    assert not list((again.folder / "imagesTs").iterdir()) and not (again.folder / "splits_final.json").exists()
    with pytest.raises(ConfigError, match="dataset id must be 1..999"):
        dataset_folder_name(1000, "x")


def test_a_case_failing_while_written_is_skipped_and_its_images_removed(tmp_path):
    src = _cases(tmp_path)
    rows = _rows(src)
    save_label_map(np.zeros((6, 10, 4), np.int16), tmp_path / "bad.nii.gz", AFFINE)  # another grid
    rows[1]["scribble"] = str(tmp_path / "bad.nii.gz")
    write_manifest(rows, tmp_path / "m3.csv")  # type: ignore[arg-type]
    res = export_manifest(tmp_path / "m3.csv", tmp_path / "raw", 9, "Bad", progress=False)
    assert res.training == ["c0"] and res.test == ["c2"]
    assert len(res.skipped) == 1 and res.skipped[0].startswith("c1: ")
    assert [p.name for p in (res.folder / "imagesTr").iterdir()] == ["c0_0000.nii.gz"]  # c1's image removed
    failed = _rows(res.folder / "failures.csv")
    assert [(r["case_id"], r["stage"]) for r in failed] == [("c1", "export")]


def test_import_msd_layout_refuses_4d_or_splits_channels(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    img = np.arange(6 * 5 * 3 * 2, dtype=np.float32).reshape(6, 5, 3, 2)
    lab = np.zeros((6, 5, 3), np.uint8)
    lab[2:4, 1:3, 1] = 1
    for cid in ("BRATS_001", "BRATS_002"):
        save_nifti(img, root / "imagesTr" / f"{cid}.nii.gz", AFFINE)
        save_nifti(lab, root / "labelsTr" / f"{cid}.nii.gz", AFFINE)
    (root / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "background", "1": "edema"},
        "numTraining": 2, "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                                       for c in ("BRATS_001", "BRATS_002")], "test": []}))  # fmt: skip
    assert list_cases(root)[1] == "msd" and label_values(json.loads((root / "dataset.json").read_text())) == (
        {"background": 0, "edema": 1},
        None,
    )
    with pytest.raises(InvalidDataError, match="4D image with 2 channels: rerun with --split-channels"):
        import_dataset(root, tmp_path / "m.csv", progress=False)
    path, skipped = import_dataset(root, tmp_path / "m.csv", split_channels=True, progress=False)
    m = load_manifest(path)
    assert not skipped and m.channels == ["flair", "t1w"] and [c.split for c in m] == ["train", "train"]
    case = m.cases[0]
    assert (case.modality, case.site, case.mask) == ("MR", "BRATS", root / "labelsTr" / "BRATS_001.nii.gz")
    assert np.array_equal(load_volume(case.images["t1w"]).array, img[..., 1])


def test_export_al_state_pastes_ingested_slices_into_their_volume(tmp_path):
    from medwss.active.pool import build_pool
    from medwss.active.state import ALConfig, ALState
    from medwss.io.nnunet import export_al_state

    src = _cases(tmp_path)
    pool, _ = build_pool(load_manifest(src).cases[:2], None, thumb_size=8, progress=False)
    state = ALState.create(tmp_path / "state", pool, ALConfig(num_classes=3, thumb_size=8), source=str(src))
    picked = {"c0_z001": 1, "c0_z003": 3, "c1_z002": 2}
    state.add_round({"round": 1, "selected": list(picked)})
    mask = load_volume(tmp_path / "c0_mask.nii.gz").array.astype(np.int64)
    part = mask[:, :, 3].copy()
    part[:, :5] = -1  # a scribble-like slice: half unlabelled
    for sid, lab in (("c0_z001", mask[:, :, 1]), ("c0_z003", part), ("c1_z002", mask[:, :, 2])):
        state.add_annotation(sid, lab, "full", "", None, AFFINE)
    res = export_al_state(state.folder, tmp_path / "raw", 501, "AL", progress=False)
    assert (res.training, res.num_classes, res.ignore) == (["c0", "c1"], 3, 3)
    got = np.asarray(nib.load(str(res.folder / "labelsTr" / "c0.nii.gz")).dataobj)
    want = np.full(mask.shape, 3, np.uint8)
    want[:, :, 1], want[:, :, 3] = mask[:, :, 1], np.where(part == -1, 3, part)
    assert np.array_equal(got, want)
    rows = _rows(res.folder / "medwss_cases.csv")
    assert [(r["case_id"], r["site"], r["modality"], r["labels"]) for r in rows] == [
        ("c0", "s", "MR", "al-state"),
        ("c1", "s", "MR", "al-state"),
    ]


@pytest.mark.slow
def test_real_acdc_case_round_trip(real, tmp_path):
    rows = _rows(real / "mri" / "acdc" / "manifest.csv")[:1]
    for r in rows:
        for col in ("image", "mask", "scribble"):
            r[col] = str(real / "mri" / "acdc" / r[col])
        r["split"] = "train"
    src = write_manifest(rows, tmp_path / "acdc.csv")  # type: ignore[arg-type]
    res = export_manifest(src, tmp_path / "raw", 27, "ACDC", classes="acdc", progress=False)
    meta = json.loads((res.folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "rv": 1, "myo": 2, "lv": 3, "ignore": 4}
    scrib = load_label_map(rows[0]["scribble"]).array
    got = np.asarray(nib.load(str(res.folder / "labelsTr" / f"{rows[0]['case_id']}.nii.gz")).dataobj)
    assert np.array_equal(got, np.where(scrib == -1, 4, scrib)) and 0.005 < (got < 4).mean() < 0.02
    path, skipped = import_dataset(res.folder, tmp_path / "back.csv", progress=False)
    (case,) = load_manifest(path).cases
    assert not skipped and (case.patient_id, case.site, case.modality) == (rows[0]["patient_id"], "acdc", "MR")
    assert np.array_equal(load_label_map(case.scribble).array, scrib)
