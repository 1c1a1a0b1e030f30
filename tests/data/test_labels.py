"""One label convention: IGNORE in memory, int16 with -1 on disk, viewer conventions on ingest, LabelSpec."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.labels import (
    IGNORE,
    LABEL_SPECS,
    LabelSpec,
    decode_labels,
    encode_labels,
    label_spec,
    load_label_map,
    save_label_map,
)
from medwss.errors import InvalidDataError


def test_round_trip_on_disk(tmp_path):
    lab = np.array([[[-1, 0], [1, 2]]], dtype=np.int64)
    path = save_label_map(lab, tmp_path / "l.nii.gz", np.diag([2.0, 2.0, 2.0, 1.0]))
    import nibabel as nib

    img = nib.load(str(path))
    assert img.get_data_dtype() == np.int16
    assert np.asarray(img.dataobj).min() == -1
    back = load_label_map(path, num_classes=3)
    assert back.array.dtype == np.int64 and np.array_equal(back.array, lab)
    assert np.allclose(back.affine, np.diag([2.0, 2.0, 2.0, 1.0]))


def test_decode_viewer_conventions():
    u8 = np.array([0, 1, 255, 2], dtype=np.uint8)
    assert decode_labels(u8, num_classes=3).tolist() == [0, 1, IGNORE, 2]
    assert decode_labels(np.array([0, 9, 1]), unlabelled=9).tolist() == [0, IGNORE, 1]
    assert decode_labels(np.array([0.0, -1.0, 2.0])).tolist() == [0, IGNORE, 2]
    # a task with 255 or more classes keeps 255 as a class
    assert decode_labels(u8, num_classes=256).tolist() == [0, 1, 255, 2]


def test_decode_errors_name_the_file():
    with pytest.raises(InvalidDataError, match=r"a\.nii\.gz: label values \[5\] outside 0..2"):
        decode_labels(np.array([0, 5]), num_classes=3, source="a.nii.gz")
    with pytest.raises(InvalidDataError, match="non-integer"):
        decode_labels(np.array([0.5, 1.0]))
    with pytest.raises(InvalidDataError, match="lie in"):
        encode_labels(np.array([-3, 0]))


def test_label_spec_remap_keeps_ignore():
    spec = label_spec({"kidney": [2, 3], "tumour": 4})
    src = np.array([0, 1, 2, 3, 4, -1, 7])
    assert spec.remap(src).tolist() == [0, 0, 1, 1, 2, IGNORE, 0]
    assert spec.names == ["background", "kidney", "tumour"] and spec.num_classes == 3
    assert spec.index("tumour") == 2 and spec.values("kidney") == (2, 3)
    assert spec.mask(src, "kidney").tolist() == [False, False, True, True, False, False, False]
    assert LabelSpec.from_groups([[1], [2, 3]]).remap(np.array([3, 1])).tolist() == [2, 1]


def test_named_specs_and_errors():
    assert label_spec("totalseg") is LABEL_SPECS["totalseg"]
    assert label_spec("kidney_tumour").values("tumour") == (4,)
    with pytest.raises(InvalidDataError, match="unknown label spec 'nope': choose one of"):
        label_spec("nope")
    with pytest.raises(InvalidDataError, match="in both"):
        LabelSpec.from_classes({"a": [1], "b": [1]})
    with pytest.raises(InvalidDataError, match="no class"):
        label_spec("binary").index("tumour")
