"""`medwss tile` then `medwss embed`: bags in tissue, failures recorded, resume, torchrun sharding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medwss.cli.main import main
from medwss.embed.store import load_bag
from medwss.embed.tiles import load_tiles
from medwss.jobs import read_failures


def _manifest(tmp_path: Path, real: Path) -> Path:
    wsi = real / "wsi"
    m = tmp_path / "m.csv"
    m.write_text(
        "case_id,patient_id,site,modality,image\n"
        f"cmu,p1,s,WSI,{wsi / 'cmu-1-small-region.svs'}\n"
        f"bad,p2,s,WSI,{wsi / 'unreadable.svs'}\n"
    )
    return m


def test_tile_then_embed_real_slide(tmp_path, real, capsys):
    m = _manifest(tmp_path, real)
    tiles, bags = tmp_path / "tiles", tmp_path / "bags"
    assert main(["tile", str(m), "--out", str(tiles), "--mpp", "2.0", "--tile-size", "64", "--quiet"]) == 3
    assert (tiles / "qa" / "cmu_tiles.png").stat().st_size > 0  # thumbnail of the tiles
    assert [r["case_id"] for r in read_failures(tiles / "failures.csv")] == ["bad"]
    args = ["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "stats", "--quiet"]
    assert main(args) == 3
    bag = load_bag(bags / "cmu.h5")
    t = load_tiles(tiles / "cmu.tiles.h5")
    np.testing.assert_array_equal(bag.coords, t.coords)
    assert len(bag) == len(t) > 10 and np.isfinite(bag.features).all()
    assert bag.attrs["encoder"] == "stats" and bag.attrs["mpp"] == 2.0
    # every tile lies in tissue: the tissue fraction recorded at tiling is above the threshold
    assert (t.tissue_fraction >= 0.25).all()
    failures = read_failures(bags / "failures.csv")
    assert [r["case_id"] for r in failures] == ["bad"] and "medwss tile" in failures[0]["message"]
    out = capsys.readouterr().out
    assert "embedded 1 case(s)" in out and "1 failed" in out
    # the output manifest points at the bags and validates
    from medwss.data import load_manifest

    got = load_manifest(bags / "manifest.csv")
    assert [c.case_id for c in got] == ["cmu"] and got.cases[0].features == (bags / "cmu.h5").resolve()
    # a re-run skips the finished case
    mtime = (bags / "cmu.h5").stat().st_mtime_ns
    assert main(args) == 3  # the bad case still fails
    assert (bags / "cmu.h5").stat().st_mtime_ns == mtime
    assert "skipped 1 finished" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    from medwss.data.phantoms import generate

    m = generate("wsi", tmp_path / "wsi", n=4, seed=3, scale=0.25, progress=False)
    tiles, bags = tmp_path / "tiles", tmp_path / "bags"
    assert main(["tile", str(m), "--out", str(tiles), "--mpp", "4.0", "--tile-size", "32", "--quiet"]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "medwss", "embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "stats",
           "--quiet", "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bags_written = sorted(p.stem for p in bags.glob("wsi_*.h5"))
    assert bags_written == ["wsi_000", "wsi_001", "wsi_002", "wsi_003"]
    import json

    run = json.loads((bags / "run.json").read_text())
    assert run["metrics"]["rank"] == 0 and 0 < run["metrics"]["done"] < 4  # rank 0 did only its share
    assert not list(bags.glob("failures.rank*.csv"))


def test_encoder_options_reach_the_encoder_and_the_bag(tmp_path):
    """`--encoder-option block=monai`: MONAI's ViT blocks build; the options are part of every bag's identity."""
    pytest.importorskip("einops")
    from medwss.data.phantoms import generate

    m = generate("wsi", tmp_path / "wsi", n=1, seed=3, scale=0.25, progress=False)
    tiles, bags = tmp_path / "tiles", tmp_path / "bags"
    assert main(["tile", str(m), "--out", str(tiles), "--mpp", "4.0", "--tile-size", "32", "--quiet"]) == 0
    base = ["embed", str(m), "--tiles", str(tiles), "--out", str(bags), "--encoder", "vit", "--quiet"]
    opts = ["--encoder-option", "block=monai", "--encoder-option", "img_size=32", "--encoder-option", "patch_size=8",
            "--encoder-option", "hidden_size=16", "--encoder-option", "num_layers=1", "--encoder-option", "num_heads=2"]  # fmt: skip
    assert main(base + opts) == 0
    bag = load_bag(next(bags.glob("*.h5")))
    assert bag.features.shape[1] == 16 and '"block": "monai"' in bag.attrs["encoder_init"]
    assert main(base + ["--encoder-option", "no-equals-sign"]) == 2
