"""2D frames (PNG/JPEG) as cases of `medwss pseudo box|evaluate`: labels PNG on the frame grid, bad frames skipped."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medwss.cli.main import main
from medwss.data.labels import IGNORE
from medwss.pseudo.config import BoxPseudoConfig
from medwss.pseudo.frames import encode_frame_labels, load_frame_labels, read_binary_mask, slice_frame


def _write_frames(folder: Path, n: int = 3, grey: bool = False) -> list[dict[str, str]]:
    """`n` 40×48 frames (a bright rectangle 'polyp' on a darker field, noise) with 0/255 PNG masks."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        mask = np.zeros((40, 48), dtype=np.uint8)
        mask[8 + i : 24 + i, 10 : 30 + i] = 255
        rgb = np.stack([np.where(mask > 0, 200, 90), np.where(mask > 0, 60, 110), np.full(mask.shape, 80)], -1)
        rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(rgb).convert("L") if grey else Image.fromarray(rgb)
        img.save(folder / "images" / f"f{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"f{i}.png")
        rows.append({"case_id": f"f{i}", "patient_id": f"p{i}", "site": "s", "modality": "OT",
                     "image": f"images/f{i}.png", "mask": f"masks/f{i}.png", "split": "train"})  # fmt: skip
    return rows


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_box_on_png_frames_writes_label_pngs_and_skips_a_corrupt_frame(tmp_path, capsys):
    rows = _write_frames(tmp_path)
    (tmp_path / "images" / "bad.png").write_bytes(b"not a png")
    rows.append({**rows[0], "case_id": "bad", "patient_id": "px", "image": "images/bad.png"})
    man = _manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"
    argv = ["pseudo", "box", str(man), "--out", str(out), "--labels", "binary", "--segmenter", "ellipse",
            "--segmenter-settings", "{fraction: 1.0}", "--inside", "ignore", "--ring", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 3  # one frame failed
    text = capsys.readouterr().out
    assert "skipped bad" in text and "bad.png" in text
    with (out / "failures.csv").open() as fh:
        assert [r["case_id"] for r in csv.DictReader(fh)] == ["bad"]
    for i in range(3):
        lab = np.asarray(Image.open(out / "labels" / f"f{i}.png"))
        assert lab.dtype == np.uint8 and lab.shape == (40, 48)  # the frame's own grid
        assert set(np.unique(lab).tolist()) == {0, 1, 255}
        box = np.zeros(lab.shape, bool)
        box[8 + i : 24 + i, 10 : 30 + i] = True
        assert (lab[~box] == 0).all() and lab[16 + i, 20] == 1  # outside: background; centre: the ellipse
        assert lab[8 + i, 10] == 255  # a box corner outside the ellipse: ignored (inside: ignore)
        assert (out / "previews" / f"f{i}.png").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["segmenter_settings"] == {"fraction": 1.0} and run["metrics"]["failed"][0].startswith("bad:")
    assert 0.9 < run["metrics"]["pooled"]["mean_dice"] <= 1.0
    ev = tmp_path / "eval"  # the label PNGs read back: the same metrics
    assert main(["pseudo", "evaluate", str(out / "labels"), str(_manifest(tmp_path / "m3.csv", rows[:3])),
                 "--out", str(ev), "--labels", "binary"]) == 0  # fmt: skip
    again = json.loads((ev / "metrics.json").read_text())["pooled"]
    assert again["mean_dice"] == pytest.approx(run["metrics"]["pooled"]["mean_dice"], abs=1e-9)


def test_frames_resized_for_the_segmenter_and_pasted_back_with_a_boxes_file(tmp_path):
    rows = _write_frames(tmp_path, n=2, grey=True)
    man = _manifest(tmp_path / "manifest.csv", rows)
    boxes = tmp_path / "boxes.csv"  # detector convention, frame pixels: x = column, y = row
    boxes.write_text("case_id,label,x0,y0,x1,y1\nf0,1,10,8,30,24\nf1,1,0,0,48,40\n")
    out = tmp_path / "out"
    argv = ["pseudo", "box", str(man), "--out", str(out), "--labels", "binary", "--segmenter", "box",
            "--boxes", str(boxes), "--slice-size", "20", "--ring", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    a = load_frame_labels(out / "labels" / "f0.png")
    rows, cols = np.nonzero(a == 1)  # the box on the 20x20 slice (corners rounded outwards), back on 40x48
    assert a.shape == (40, 48) and set(np.unique(a).tolist()) == {0, 1} and (a[8:24, 10:30] == 1).all()
    assert (rows.min(), rows.max() + 1) == (8, 24) and 8 <= cols.min() <= 10 and 30 <= cols.max() + 1 <= 33
    assert (load_frame_labels(out / "labels" / "f1.png") == 1).all()


def test_slice_frame_reads_rgb_and_masks_at_slice_size(tmp_path):
    from medwss.data.manifest import Case

    rows = _write_frames(tmp_path, n=1)
    jpg_mask = tmp_path / "masks" / "f0.jpg"  # a noisy JPEG mask
    Image.open(tmp_path / "masks" / "f0.png").save(jpg_mask, quality=60)
    assert np.array_equal(read_binary_mask(jpg_mask), read_binary_mask(tmp_path / "masks" / "f0.png"))
    case = Case("f0", "p0", "s", "OT", {"image": tmp_path / rows[0]["image"]}, mask=jpg_mask)
    sc = slice_frame(case, BoxPseudoConfig(labels="binary", slice_size=20))
    assert sc.colour is not None and sc.colour[0].shape == (20, 20, 3) and sc.colour[0].dtype == np.uint8
    assert sc.images[0].shape == (1, 20, 20) and sc.images[0].min() >= 0 and sc.images[0].max() <= 1
    assert sc.gts is not None and set(np.unique(sc.gts[0]).tolist()) == {0, 1} and sc.geometry.shape == (40, 48, 1)
    assert list(encode_frame_labels(np.array([IGNORE, 0, 3]))) == [255, 0, 3]


def test_a_setting_the_segmenter_does_not_take_is_one_line_naming_it(tmp_path, capsys):
    man = _manifest(tmp_path / "manifest.csv", _write_frames(tmp_path, n=1))
    argv = ["pseudo", "box", str(man), "--out", str(tmp_path / "o"), "--segmenter", "grabcut",
            "--segmenter-settings", "{dilat: 2}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dilat" in err[0] and "grabcut" in err[0]


def test_shipped_kvasir_config_on_real_frames_equals_the_benchmark_code(real, tmp_path):
    from medwss.config import load_config
    from tests.conftest import ROOT

    root = real / "endo" / "polyp"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"Kvasir-SEG frames not found: {root}")
    with (root / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"][:3]
    for r in rows:
        r["image"], r["mask"] = str(root / r["image"]), str(root / r["mask"])
    man = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    argv = ["pseudo", "box", str(man), "--out", str(out), "--config", str(ROOT / "configs" / "pseudo_kvasir_box.yaml")]
    assert main(argv + ["--quiet"]) == 0
    bench = runpy.run_path(str(ROOT / "benchmarks" / "pseudo_polyp.py"))
    bcfg = load_config(ROOT / "configs" / "pseudo_polyp_gcd2.yaml", bench["PolypBenchConfig"])
    frames = []
    for r in rows:  # the benchmark's reading of a frame (load_frames, without its seeded subset)
        with Image.open(r["image"]) as im, Image.open(r["mask"]) as mk:
            small = np.asarray(im.convert("RGB").resize((bcfg.size,) * 2, Image.Resampling.BOX))
            m = mk.convert("L").point(lambda v: 255 if v > 127 else 0).resize((bcfg.size,) * 2, Image.Resampling.BOX)
            frames.append(bench["Frame"](r["case_id"], small, (np.asarray(m) > 127).astype(np.int64), None))
    seg = bench["make_segmenter"]("grabcut", bcfg.segmenters["grabcut"][0])
    labs = bench["pseudo_labels"](frames, bench["frame_boxes"](frames, "tight", bcfg, 0), seg, bcfg.ring, "ignore")
    for f, lab in zip(frames, labs, strict=True):
        png = load_frame_labels(out / "labels" / f"{f.case_id}.png")
        assert png.shape == (256, 256) and np.array_equal(png[1::2, 1::2], lab)
        assert np.array_equal(png, np.repeat(np.repeat(lab, 2, 0), 2, 1))  # nearest back onto 256x256
