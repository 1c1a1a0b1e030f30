"""`medwss pseudo reach` on the real ACDC scribbles: scribbles kept, the far field background, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medwss.cli.main import main
from medwss.data.labels import IGNORE, load_label_map
from medwss.data.manifest import load_manifest, write_manifest
from tests.conftest import ROOT


def test_reach_on_real_acdc_scribbles(real, tmp_path, capsys):
    src = real / "mri" / "acdc" / "manifest.csv"
    if not src.is_file():
        pytest.skip(f"ACDC data not found under {real}")
    cases = load_manifest(src).split("train")[:2]
    keys = ("case_id", "patient_id", "site", "modality", "image", "mask", "scribble", "split")
    man = write_manifest([{k: getattr(c, k) for k in keys} for c in cases], tmp_path / "m.csv")
    out = tmp_path / "out"
    argv = [
        "pseudo",
        "reach",
        str(man),
        "--out",
        str(out),
        "--config",
        str(ROOT / "configs" / "pseudo_acdc_reach.yaml"),
    ]
    assert main([*argv, "--reach-mm", "20", "--quiet"]) == 0
    capsys.readouterr()
    for c in cases:
        lab = load_label_map(out / "labels" / f"{c.case_id}.nii.gz").array
        scrib = load_label_map(c.scribble).array
        assert np.array_equal(lab[scrib != IGNORE], scrib[scrib != IGNORE])  # every scribble kept
        for z in range(lab.shape[2]):  # the data's spacing is 1 mm: 20 mm = 20 pixels
            fg = scrib[..., z] > 0
            far = ndimage.distance_transform_edt(~fg) > 20 if fg.any() else np.ones(fg.shape, bool)
            assert (lab[..., z][far] == 0).all() and (lab[..., z][~far] == scrib[..., z][~far]).all()
