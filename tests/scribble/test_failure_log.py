"""`medwss scribble train`: a case that cannot be loaded goes to the one failure log (failures.csv), exit 3."""

from __future__ import annotations

import csv
from pathlib import Path

from medwss.cli.main import main
from medwss.jobs import read_failures

TINY_YAML = """
supervision: full
channels: [4, 8]
epochs: 1
batch_size: 8
augment: false
crop_mm: 32.0
spacing_mm: 2.0
"""


def test_train_records_a_corrupt_case_in_failures_csv(mri_manifest, tmp_path, capsys, monkeypatch):
    import torch

    import medwss.scribble.workflow as wf
    from medwss.seg.train import build

    torch.set_num_threads(1)
    trained = []

    def untrained(samples, seg, val=None, **kw):  # noqa: ANN001, ANN003, ANN202  (the failure log, not training, is tested)
        trained.append(len(samples))
        return build(seg), [{"epoch": 0, "loss": 1.0}]

    monkeypatch.setattr(wf, "train_segmenter", untrained)
    every = list(csv.DictReader(mri_manifest.open()))
    train = [r for r in every if r["split"] == "train"][:2]
    rows = train + [r for r in every if r["split"] == "val"][:1]
    bad = tmp_path / "bad_t2.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    cols = [k for k in rows[0] if k.startswith("image") or k in ("mask", "scribble")]
    for r in rows:
        for k in cols:
            if r.get(k):
                r[k] = str(mri_manifest.parent / r[k])
    broken = train[1]
    image_col = next(k for k in cols if k.startswith("image") and broken.get(k))
    broken[image_col] = str(bad)
    man = tmp_path / "m.csv"
    with man.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "m"
    assert main(["scribble", "train", str(man), "--out", str(out), "--config", str(cfg), "--quiet"]) == 3
    assert "medwss scribble train: " in capsys.readouterr().err
    (row,) = read_failures(out / "failures.csv")
    assert row["case_id"] == broken["case_id"] and row["image"] == str(bad) and row["message"] and row["error_class"]
    assert trained and trained[0] > 0  # trained on the case that loaded
    assert (out / "model.pt").exists() and not (out / "failures.json").exists()
    assert not list(Path(out).glob("*.tmp"))
