"""MIL from CLAM/TRIDENT-style bags alone: a manifest of ``case_id,label,features`` and no slides.

The bags are written as CLAM does (datasets ``features`` (N, C) and ``coords`` (N, 2) int, level-0
top-left corners; ``patch_size``/``patch_level`` attributes on ``coords``), tiny and seeded.
"""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import torch

from medwss.cli.main import main
from medwss.data.manifest import case_path, check_manifest, load_manifest
from medwss.embed.store import FeatureBag, load_bag
from medwss.errors import InvalidDataError, ManifestError
from medwss.eval.heatmap import tile_grid_geometry, tile_span
from medwss.mil.heatmaps import GRID_BACKGROUND, write_case

torch.set_num_threads(1)

PATCH = 256
GRID = 8  # 8×8 tile grid, the first row left off (off tissue)
CLUSTER = (slice(3, 6), slice(2, 5))  # rows, cols of the lesion in positive cases


def _grid_coords() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(1, GRID), np.arange(GRID), indexing="ij")
    rc = np.stack([rows.ravel(), cols.ravel()], 1)
    return rc, np.stack([rc[:, 1] * PATCH, rc[:, 0] * PATCH], 1).astype(np.int64)  # (x, y)


def _in_cluster(rc: np.ndarray) -> np.ndarray:
    r, c = CLUSTER
    return (rc[:, 0] >= r.start) & (rc[:, 0] < r.stop) & (rc[:, 1] >= c.start) & (rc[:, 1] < c.stop)


def write_clam_bag(path, features, coords, attrs=None) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=np.asarray(features, np.float32))
        d = f.create_dataset("coords", data=np.asarray(coords, np.int64))
        for k, v in (attrs if attrs is not None else {"patch_size": PATCH, "patch_level": 0}).items():
            d.attrs[k] = v


@pytest.fixture(scope="module")
def clam_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("clam")
    rng = np.random.default_rng(0)
    rc, coords = _grid_coords()
    lines = ["case_id,label,features"]
    for i in range(16):
        label = i % 2
        feats = rng.normal(0, 0.3, (len(coords), 6))
        if label:
            feats[_in_cluster(rc), 0] += 3.0
        write_clam_bag(root / f"slide{i:02d}.h5", feats, coords)
        lines.append(f"slide{i:02d},{label},slide{i:02d}.h5")
    path = root / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bag_only_manifest_loads_with_defaults(clam_manifest):
    assert check_manifest(clam_manifest) == []
    m = load_manifest(clam_manifest, images=False)
    c = m.cases[0]
    assert (c.case_id, c.patient_id, c.site, c.modality, c.label) == ("slide00", "slide00", "unknown", "", 0)
    assert c.features == clam_manifest.parent / "slide00.h5" and c.images == {} and m.channels == []
    with pytest.raises(InvalidDataError, match="needs an image column") as err:
        c.image  # noqa: B018
    assert str(clam_manifest) in str(err.value)
    with pytest.raises(ManifestError, match="needs an image column") as err2:
        load_manifest(clam_manifest)  # every workflow but MIL
    assert str(clam_manifest) in str(err2.value) and "\n" not in str(err2.value)


def test_bag_only_manifest_needs_features_on_every_row(tmp_path):
    (tmp_path / "a.h5").write_bytes(b"x")
    path = tmp_path / "m.csv"
    path.write_text("case_id,label,features,site\na,1,a.h5,s1\nb,0,,s1\n")
    assert check_manifest(path) == ["line 3 (b): empty features"]


@pytest.mark.parametrize("command", ["tile", "embed"])
def test_image_workflows_refuse_bag_only_manifest(clam_manifest, tmp_path, capsys, command):
    args = [command, str(clam_manifest), "--out", str(tmp_path / "o"), "--quiet"]
    if command == "embed":
        args += ["--tiles", str(tmp_path / "tiles")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "needs an image column" in err and str(clam_manifest) in err and len(err.splitlines()) == 1


def test_manifest_check_accepts_bag_only(clam_manifest, capsys):
    assert main(["manifest", "check", str(clam_manifest)]) == 0
    out = capsys.readouterr().out
    assert "OK, 16 cases, 16 patients" in out and "feature bags only" in out


def test_train_predict_heatmap_from_clam_bags(clam_manifest, tmp_path):
    run = tmp_path / "run"
    args = ["mil", "train", str(clam_manifest), "--out", str(run), "--aggregator", "max", "--epochs", "8"]
    assert main([*args, "--lr", "0.05", "--seed", "0", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cases"]["train"] + metrics["cases"]["val"] == 16
    preds = tmp_path / "preds.csv"
    assert main(["mil", "predict", str(clam_manifest), "--model", str(run / "model.pt"), "--out", str(preds)]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 16 and all(0 <= float(r["prob"]) <= 1 for r in rows)
    auc = json.loads((tmp_path / "preds.metrics.json").read_text())["auc"]
    assert auc > 0.9  # the lesion feature is strong: the bags, their coords and labels were read right
    hm = tmp_path / "hm"
    assert (
        main(["mil", "heatmap", str(clam_manifest), "--model", str(run / "model.pt"), "--out", str(hm), "--quiet"]) == 0
    )
    assert not (hm / "failures.csv").exists()
    for i in range(16):
        for suffix in ("_scores.csv", "_scores.h5", "_heatmap.png", "_heatmap.geojson"):
            assert (hm / f"slide{i:02d}{suffix}").stat().st_size > 0
    assert not list(hm.glob("*_overlay.png")) and not list(hm.glob("*.tif"))  # no slide, no overlay


def test_grid_heatmap_files_are_in_level0_pixels(clam_manifest, tmp_path):
    from PIL import Image

    case = load_manifest(clam_manifest, images=False).cases[1]
    fb = load_bag(case.features)
    rc = np.stack([fb.coords[:, 1] // PATCH, fb.coords[:, 0] // PATCH], 1)
    scores = _in_cluster(rc).astype(np.float64)  # 1 on the lesion, 0 elsewhere
    files = write_case(case, fb, scores, tmp_path, threshold=0.5)
    geo = json.loads((tmp_path / "slide01_heatmap.geojson").read_text())
    assert files["geojson"] == str(tmp_path / "slide01_heatmap.geojson")
    assert len(geo["features"]) == 1
    ring = np.asarray(geo["features"][0]["geometry"]["coordinates"][0], dtype=float)
    r, c = CLUSTER
    np.testing.assert_allclose(ring.min(0), [c.start * PATCH, r.start * PATCH], atol=PATCH / 2)
    np.testing.assert_allclose(ring.max(0), [c.stop * PATCH, r.stop * PATCH], atol=PATCH / 2)
    png = np.asarray(Image.open(tmp_path / "slide01_heatmap.png").convert("RGB"))
    # 8×8 tiles, 2 cells per tile side, 32 px per cell (the cap), plus a colour bar at the right
    h = png.shape[0]
    assert h == 2 * GRID * 32 and png.shape[1] > h
    assert (png[: h // GRID // 2, : h // GRID] == GRID_BACKGROUND).all()  # the off-tissue first row is grey
    lesion = png[int((r.start + 0.5) * h / GRID), int((c.start + 0.5) * h / GRID)]
    background = png[int(6.5 * h / GRID), int(6.5 * h / GRID)]
    assert lesion.astype(int).sum() > background.astype(int).sum() + 200  # inferno: bright = high


def test_tile_span_from_clam_trident_or_the_coordinate_step():
    coords = np.array([[0, 0], [512, 0], [1024, 512]])
    bag = lambda attrs: FeatureBag(np.zeros((3, 2)), coords, attrs=attrs)  # noqa: E731
    assert tile_span(bag({"span": 300}))[0] == 300
    assert tile_span(bag({"patch_size": 256, "patch_level": 0}))[0] == 256
    assert tile_span(bag({"patch_size": 256, "patch_level": 1, "downsample": [2.0, 2.0]}))[0] == 512
    assert tile_span(bag({"patch_size": 224, "patch_size_level0": 448}))[0] == 448
    assert tile_span(bag({"patch_size": 256, "patch_level": 2})) == (512.0, "coordinate step")
    assert tile_span(bag({})) == (512.0, "coordinate step")
    with pytest.raises(InvalidDataError, match="not a positive number"):
        tile_span(bag({"span": 0}))
    with pytest.raises(InvalidDataError, match="no coordinate step"):
        tile_span(FeatureBag(np.zeros((1, 2)), np.array([[512, 512]])))
    (w0, h0), ds, span = tile_grid_geometry(bag({}))
    assert (w0, h0, ds, span) == (1536, 1024, 256.0, 512.0)
    (w0, h0), ds, _ = tile_grid_geometry(FeatureBag(np.zeros((2, 2)), np.array([[0, 0], [10**9, 10**9]])))
    assert (w0 / ds) * (h0 / ds) <= (1 << 24) * 1.01  # hostile coordinates make a coarser map, not a huge one


def test_case_path_refuses_escaping_ids(tmp_path):
    assert case_path(tmp_path, "slide01", "_scores.csv") == tmp_path / "slide01_scores.csv"
    for bad in ("../../esc", "/abs/x", "..", "a\\b", "a\x00b"):
        with pytest.raises(InvalidDataError):
            case_path(tmp_path, bad, "_scores.csv")
