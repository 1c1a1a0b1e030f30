"""Context phantom bags: lesions are connected clusters, look-alikes isolated, max pooling uninformative."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medwss.data.manifest import load_manifest
from medwss.data.phantoms.bags import BagPhantomConfig, _basis, generate_bags, load_truth, make_bag
from medwss.embed.store import load_bag
from medwss.errors import ConfigError


def _grid(case, values) -> np.ndarray:  # noqa: ANN001
    side = int(case.grid_index.max()) + 1
    out = np.zeros((side, side), dtype=float)
    out[case.grid_index[:, 0], case.grid_index[:, 1]] = values
    return out


def test_lesion_is_one_cluster_and_lookalikes_are_isolated() -> None:
    cfg = BagPhantomConfig()
    sig = _basis(cfg)[0]
    for i in range(6):
        case = make_bag(i, cfg, label=1)
        lesion = _grid(case, case.truth) > 0
        _, n_parts = ndimage.label(lesion)
        assert n_parts == 1 and cfg.cluster[0] <= lesion.sum() <= cfg.cluster[1]
        proj = case.features @ sig
        looks = (proj > cfg.signal * 0.5) & (case.truth == 0)  # tumour-like tiles off the lesion
        assert looks.sum() >= 1  # every case holds look-alikes
        near = ndimage.binary_dilation(lesion, np.ones((3, 3)))
        assert not (_grid(case, looks) > 0)[near].any()  # none touches the lesion


def test_negatives_hold_lookalikes_and_seeding_is_exact() -> None:
    cfg = BagPhantomConfig()
    a, b = make_bag(3, cfg, label=0), make_bag(3, cfg, label=0)
    assert a.truth.sum() == 0
    np.testing.assert_array_equal(a.features, b.features)
    proj = a.features @ _basis(cfg)[0]
    assert (proj > cfg.signal * 0.5).sum() >= cfg.lookalikes[0] // 2


def test_max_of_instances_does_not_separate_the_classes() -> None:
    from sklearn.metrics import roc_auc_score

    cfg = BagPhantomConfig(n=80)
    sig = _basis(cfg)[0]
    y, top = [], []
    for i in range(cfg.n):
        case = make_bag(i, cfg, label=i % 2)
        y.append(i % 2)
        top.append(float((case.features @ sig).max()))
    assert 0.3 < roc_auc_score(y, top) < 0.7


def test_generate_writes_clam_bags_and_a_bag_only_manifest(tmp_path) -> None:  # noqa: ANN001
    path = generate_bags(tmp_path, BagPhantomConfig(n=10, grid=10, cluster=(3, 6), lookalikes=(2, 4)), progress=False)
    manifest = load_manifest(path, images=False)
    assert len(manifest) == 10 and {c.split for c in manifest} <= {"train", "val", "test"}
    case = manifest.cases[1]
    fb = load_bag(case.features)
    assert fb.features.shape[1] == 32 and fb.coords is not None and fb.attrs["patch_size"] == 256
    assert int(load_truth(case.features).sum()) == int(case.meta["lesion_tiles"]) > 0


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ConfigError, match="cluster"):
        make_bag(0, BagPhantomConfig(cluster=(5, 2)), label=1)


def test_cli_writes_bags_from_the_shipped_config(tmp_path) -> None:  # noqa: ANN001
    from medwss.cli.main import main

    assert main(["phantom", "bags", "--out", str(tmp_path), "--config", "configs/phantom_bags.yaml",
                 "--n", "6", "--lookalikes", "2", "4", "--quiet"]) == 0  # fmt: skip
    manifest = load_manifest(tmp_path / "manifest.csv", images=False)
    assert len(manifest) == 6 and (tmp_path / "run.json").exists()
