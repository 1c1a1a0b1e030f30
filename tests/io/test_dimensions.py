"""A multi-channel (4D) volume is refused where a 3D volume is needed, naming the file; ``medwss info`` still reads it."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import InvalidDataError
from medwss.io import load_volume, save_nifti
from medwss.io.volume import Volume


def test_four_d_refused_naming_the_file_unless_channels(tmp_path):
    p = save_nifti(Volume(np.zeros((6, 5, 4, 2), np.float32), np.eye(4)), tmp_path / "two.nii.gz")
    with pytest.raises(InvalidDataError, match="2 channels") as err:
        load_volume(p)
    assert str(err.value).startswith(str(p)) and "\n" not in str(err.value)
    assert load_volume(p, channels=True).shape == (6, 5, 4, 2)
    one = save_nifti(Volume(np.zeros((6, 5, 4, 1), np.float32), np.eye(4)), tmp_path / "one.nii.gz")
    assert load_volume(one).array.ndim == 3


def test_pipelines_refuse_it_in_one_line(tmp_path, capsys):
    from medwss.cli.main import main

    p = save_nifti(Volume(np.zeros((6, 5, 4, 3), np.int16), np.eye(4)), tmp_path / "rgbish.nii.gz")
    assert main(["info", str(p)]) == 0
    capsys.readouterr()
    (tmp_path / "m.csv").write_text(f"case_id,patient_id,site,modality,image\nc1,p1,s,CT,{p}\n")
    assert main(["pseudo", "box", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    out = capsys.readouterr()
    assert "rgbish.nii.gz" in out.out and "3 channels" in out.out and "Traceback" not in out.err
