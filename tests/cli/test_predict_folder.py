"""``predict -i DIR -o DIR`` for MIL models (folders of bags or slides) and pseudo-label segmenters (volumes)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medwss.cli.main import main

torch.set_num_threads(1)

PATCH = 256


def _clam_bag(path: Path, rng: np.random.Generator, n: int = 12) -> None:
    rc = np.stack(np.meshgrid(np.arange(3), np.arange(4), indexing="ij"), -1).reshape(-1, 2)[:n]
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=rng.normal(0, 1, (n, 6)).astype(np.float32))
        d = f.create_dataset("coords", data=(rc[:, ::-1] * PATCH).astype(np.int64))
        d.attrs["patch_size"], d.attrs["patch_level"] = PATCH, 0


def _mil_model(path: Path, in_dim: int, embedding: dict | None = None) -> Path:
    from medwss.mil.registry import create_aggregator
    from medwss.mil.train import save_model

    torch.manual_seed(0)
    model = create_aggregator("abmil", in_dim, 1)
    meta = {"aggregator": "abmil", "aggregator_kwargs": {}, "in_dim": in_dim, "n_classes": 1}
    if embedding is not None:
        meta |= {"encoder": embedding.get("encoder"), "embedding": embedding}
    return save_model(path, model, meta)


@pytest.fixture
def bag_folder(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    bags = tmp_path / "bags"
    bags.mkdir()
    for cid in ("slide_a", "slide_b"):
        _clam_bag(bags / f"{cid}.h5", rng)
    (bags / "broken.h5").write_bytes(b"not hdf5")
    (bags / "notes.txt").write_text("ignored")
    return bags, _mil_model(tmp_path / "model.pt", 6)


def test_mil_predict_and_heatmap_on_a_folder_of_bags(bag_folder, tmp_path, capsys):
    bags, model = bag_folder
    out = tmp_path / "pred"
    assert main(["mil", "predict", "-i", str(bags), "--model", str(model), "-o", str(out)]) == 3  # some failed
    assert "skipped broken.h5" in capsys.readouterr().out and "broken.h5" in (out / "failures.csv").read_text()
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["case_id"] for r in rows] == ["slide_a", "slide_b"] and list(rows[0]) == ["case_id", "prob"]
    probs = np.array([float(r["prob"]) for r in rows])
    assert np.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()
    run = json.loads((out / "run.json").read_text())
    assert run["metrics"]["done"] == 2 and run["metrics"]["failed"][0]["case_id"] == "broken.h5"
    # the manifest form (unchanged) gives the same probabilities
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,features\n" + "".join(f"{c},{bags / c}.h5\n" for c in ("slide_a", "slide_b")))
    assert main(["mil", "predict", str(manifest), "--model", str(model), "--out", str(tmp_path / "m_pred.csv")]) == 0
    ref = list(csv.DictReader((tmp_path / "m_pred.csv").open()))
    np.testing.assert_allclose(probs, [float(r["prob"]) for r in ref], atol=1e-6)
    hm = tmp_path / "hm"
    assert main(["mil", "heatmap", "-i", str(bags), "--model", str(model), "-o", str(hm), "--quiet"]) == 3
    for cid in ("slide_a", "slide_b"):
        scores = list(csv.DictReader((hm / f"{cid}_scores.csv").open()))
        assert len(scores) == 12 and all(np.isfinite(float(next(reversed(r.values())))) for r in scores)
        assert (hm / f"{cid}_heatmap.png").stat().st_size > 0 and (hm / f"{cid}_heatmap.geojson").exists()
    assert "broken" in (hm / "failures.csv").read_text()


def test_mil_bags_of_another_feature_size_are_skipped_not_fatal(bag_folder, tmp_path, capsys):
    bags, _ = bag_folder
    _clam_bag(bags / "wide.h5", np.random.default_rng(1))
    with h5py.File(bags / "wide.h5", "a") as f:
        del f["features"]
        f.create_dataset("features", data=np.zeros((12, 9), np.float32))
    out = tmp_path / "pred"
    assert main(["mil", "predict", "-i", str(bags), "--model", str(bag_folder[1]), "-o", str(out)]) == 3
    assert "skipped wide: " in capsys.readouterr().out and "the model takes 6" in (out / "run.json").read_text()


@pytest.mark.parametrize("command", ["predict", "heatmap"])
def test_mil_needs_exactly_one_of_manifest_and_folder(command, bag_folder, tmp_path, capsys):
    bags, model = bag_folder
    both = ["mil", command, "m.csv", "-i", str(bags), "--model", str(model), "-o", str(tmp_path / "o")]
    assert main(both) == 2
    err = capsys.readouterr().err.strip()
    assert "not both" in err and len(err.splitlines()) == 1
    assert main(["mil", command, "--model", str(model), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "give a manifest or -i/--input DIR" in err and len(err.splitlines()) == 1


def test_mil_image_folder_needs_the_encoder_the_model_does_not_record(tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "a.svs").write_bytes(b"x")
    bare = _mil_model(tmp_path / "bare.pt", 6)  # CLAM bags: no encoder recorded
    assert main(["mil", "predict", "-i", str(slides), "--model", str(bare), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--encoder NAME" in err and "--weights" in err and len(err.splitlines()) == 1
    emb = {"encoder": "resnet18", "encoder_init": "weights sha256:" + "0" * 64, "kind": "slide", "tile_size": [224]}
    weighted = _mil_model(tmp_path / "w.pt", 6, emb)
    assert main(["mil", "predict", "-i", str(slides), "--model", str(weighted), "-o", str(tmp_path / "o")]) == 2
    assert "pass --weights FILE" in capsys.readouterr().err
    argv = ["mil", "heatmap", "-i", str(slides), "--model", str(weighted), "-o", str(tmp_path / "o")]
    assert main(argv + ["--encoder", "stats"]) == 2
    assert "--encoder stats differs" in capsys.readouterr().err


@pytest.mark.slow
def test_mil_predict_tiles_and_embeds_a_slide_folder_as_recorded(real, tmp_path, capsys):
    from medwss.embed.encoders import create_encoder

    svs = real / "wsi" / "cmu-1-small-region.svs"
    if not svs.exists():
        pytest.skip(f"{svs} is absent")
    slides = tmp_path / "slides"
    slides.mkdir()
    os.symlink(svs, slides / "cmu1.svs")
    os.symlink(real / "wsi" / "broken.svs", slides / "broken.svs")
    dim = create_encoder("stats", spatial_dims=2, in_channels=3).embed_dim
    emb = {"encoder": "stats", "encoder_init": "no weights", "kind": "slide", "tile_size": [224], "mpp": 0.5}
    model = _mil_model(tmp_path / "model.pt", dim, emb)
    out = tmp_path / "out"
    argv = ["mil", "predict", "-i", str(slides), "--model", str(model), "-o", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 3
    assert "skipped broken.svs" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["case_id"] for r in rows] == ["cmu1"] and 0 < float(rows[0]["prob"]) < 1
    with h5py.File(out / "bags" / "cmu1.h5") as f:
        assert f.attrs["encoder"] == "stats" and int(f.attrs["tile_size"][0]) == 224
    assert main(argv + ["--tile-size", "256"]) == 2
    assert "tile-size 224" in capsys.readouterr().err


# --- pseudo predict: agmm/dupl networks on a folder of volumes -------------------------------------


def _pseudo_model(path: Path, downsample: int = 2, calibrate: Path | None = None) -> Path:
    """A seeded random `TinyFCN` as an ``agmm`` model file; `calibrate` (an image) shifts the head bias so
    that about half of its voxels are foreground (both segments present)."""
    from medwss.data.manifest import Case
    from medwss.pseudo.agmm_train import save_agmm_model
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.nets import TinyFCN
    from medwss.pseudo.volumes import slice_case

    cfg = PseudoConfig(labels="binary", downsample=downsample, window="abdomen")
    torch.manual_seed(0)
    model = TinyFCN(1, len(cfg.classes()), width=4).eval()
    if calibrate is not None:
        sc = slice_case(Case("c", "c", "s", "CT", {"image": calibrate}), cfg)
        with torch.no_grad():
            logits = model(torch.from_numpy(np.stack(sc.images)))
            model.head.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    return save_agmm_model(path, model, {"classes": cfg.classes(), "train_config": cfg.model_dump(mode="json")})


def test_pseudo_predict_writes_label_maps_on_the_source_grid(tmp_path, capsys):
    import nibabel as nib

    from medwss.data.manifest import Case
    from medwss.pseudo.agmm_train import load_agmm_model, predict_labels
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.volumes import slice_case

    rng = np.random.default_rng(0)
    inp = tmp_path / "in"
    inp.mkdir()
    affines = {"ras": np.diag([1.5, 1.5, 3.0, 1.0]), "psr": np.array([[0, 0, 3.0, 5], [0, -1.5, 0, 7], [-1.5, 0, 0, 9], [0, 0, 0, 1]])}  # fmt: skip
    for name, aff in affines.items():
        arr = rng.normal(0, 200, (20, 18, 6)).astype(np.int16)
        arr[5:12, 4:10] += 400
        nib.save(nib.Nifti1Image(arr, aff), inp / f"{name}.nii.gz")
    (inp / "bad.nii.gz").write_bytes(b"nope")
    model = _pseudo_model(tmp_path / "model.pt")
    out = tmp_path / "out"
    argv = ["pseudo", "predict", "--model", str(model), "-i", str(inp), "-o", str(out), "--format", "slicer"]
    assert main(argv + ["--device", "cpu", "--quiet"]) == 3
    text = capsys.readouterr().out
    assert "label maps for 2 case(s)" in text and "skipped bad.nii.gz" in text
    net, _ = load_agmm_model(model)
    cfg = PseudoConfig(labels="binary", downsample=2, window="abdomen")
    for name in affines:
        src, img = nib.load(inp / f"{name}.nii.gz"), nib.load(out / f"{name}.nii.gz")
        assert img.shape == src.shape and np.allclose(img.affine, src.affine) and img.get_data_dtype() == np.int16
        assert (out / f"{name}.ctbl").exists()
        # the slices the training code path (slice_case + predict_labels) labels, pasted back
        case = Case(name, name, "s", "CT", {"image": inp / f"{name}.nii.gz"})
        sc = slice_case(case, cfg)
        np.testing.assert_array_equal(np.asarray(img.dataobj), sc.to_source(predict_labels(net, sc.images)))
    assert json.loads((out / "run.json").read_text())["metrics"]["classes"] == ["background", "foreground"]


def test_pseudo_predict_refuses_other_model_kinds(bag_folder, tmp_path, capsys):
    _, mil_model = bag_folder
    inp = tmp_path / "in"
    inp.mkdir()
    assert main(["pseudo", "predict", "--model", str(mil_model), "-i", str(inp), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'mil' model file" in err and "pseudo_agmm" in err and len(err.splitlines()) == 1


def test_pseudo_predict_dicom_series_to_dicom_seg(real, tmp_path, capsys):
    pytest.importorskip("highdicom")
    import nibabel as nib

    from medwss.io.seg_export import read_dicom_seg

    series = real / "volumes" / "ct_dicom_series"
    if not series.exists():
        pytest.skip(f"{series} is absent")
    inp = tmp_path / "in"
    inp.mkdir()
    os.symlink(series, inp / "ct")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4)), inp / "nifti.nii.gz")
    model = _pseudo_model(tmp_path / "model.pt", downsample=1, calibrate=series)
    out = tmp_path / "out"
    argv = ["pseudo", "predict", "--model", str(model), "-i", str(inp), "-o", str(out), "--format", "dicom-seg"]
    assert main(argv + ["--device", "cpu", "--quiet"]) == 0
    assert "nifti: not a DICOM series: no DICOM SEG written" in capsys.readouterr().out
    labels = np.asarray(nib.load(out / "ct.nii.gz").dataobj)
    assert labels.shape == (16, 16, 4) and set(np.unique(labels).tolist()) == {0, 1}  # both segments
    np.testing.assert_array_equal(read_dicom_seg(out / "ct_seg.dcm", series), labels)
    assert (out / "nifti.nii.gz").exists() and not (out / "nifti_seg.dcm").exists()


def test_mil_model_meta_records_how_its_bags_were_made(tmp_path):
    """`_fit` stores `embedding_of` its first training bag as ``meta["embedding"]``; `embedding_configs` reads it."""
    from medwss.data.manifest import Case
    from medwss.embed.images_to_bags import embedding_configs, embedding_of
    from medwss.embed.store import FeatureBag, save_bag

    attrs = {"encoder": "stats", "encoder_init": "no weights", "kind": "slide", "tile_size": [224], "mpp": 0.5}
    coords = np.stack([np.arange(5) * 448, np.zeros(5)], 1).astype(np.int64)
    bag = save_bag(FeatureBag(np.ones((5, 4), np.float32), coords, attrs=attrs | {"level": 0}), tmp_path / "b.h5")
    emb = embedding_of(Case("b", "b", "s", "WSI", {}, features=bag))
    assert emb == attrs
    tile_cfg, embed_cfg = embedding_configs({"encoder": "stats", "embedding": emb})
    assert (tile_cfg.tile_size, tile_cfg.mpp, embed_cfg.encoder, embed_cfg.weights) == (224, 0.5, "stats", None)
    assert embedding_of(Case("c", "c", "s", "WSI", {})) == {}


def test_pseudo_predict_dupl_students_average_as_in_training(tmp_path):
    import nibabel as nib

    from medwss.data.manifest import Case
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.dupl import dupl_labels, save_students
    from medwss.pseudo.nets import TinyFCN
    from medwss.pseudo.predict import predict_volumes
    from medwss.pseudo.volumes import slice_case

    cfg = PseudoConfig(labels="binary", downsample=1, window="abdomen")
    torch.manual_seed(1)
    students = (TinyFCN(1, 2, width=4).eval(), TinyFCN(1, 2, width=4).eval())
    model = save_students(
        tmp_path / "model.pt", students, {"classes": cfg.classes(), "train_config": cfg.model_dump(mode="json")}
    )
    arr = np.random.default_rng(2).normal(0, 300, (12, 10, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(arr, np.diag([2.0, 2.0, 4.0, 1.0])), tmp_path / "v.nii.gz")
    case = Case("v", "v", "s", "CT", {"image": tmp_path / "v.nii.gz"})
    summary = predict_volumes([case], model, tmp_path / "out", confidence=0.55, progress=False)
    assert summary["done"] == 1 and not summary["failed"]
    sc = slice_case(case, cfg)
    expected = sc.to_source(dupl_labels(students, sc.images, confidence=0.55))
    got = np.asarray(nib.load(tmp_path / "out" / "v.nii.gz").dataobj)
    np.testing.assert_array_equal(got, expected)
    again = predict_volumes([case], model, tmp_path / "out", progress=False)  # existing output kept
    assert (again["done"], again["skipped"]) == (0, 1)
