"""The tiling job in the library: worker processes, shards, per-case claim files, one shared failure log."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medwss.data.manifest import load_manifest
from medwss.embed import tiling_job
from medwss.embed.sharing import (
    CaseClaims,
    SharedFailureLog,
    parse_shard,
    resolve_shard,
    shard_cases,
    shard_from_env,
)
from medwss.embed.tiling_job import TileConfig, tile_manifest
from medwss.errors import ConfigError
from medwss.io.atomic import clean_stale_temps
from medwss.jobs import read_failures

CFG = TileConfig(tile_size=8, qa=False)  # no QA images: they pull in torch, seconds per spawned worker


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """A manifest of five tiny MR volumes and one case whose image is missing."""
    from medwss.io.volume import Volume
    from medwss.io.volumes import save_nifti

    d = tmp_path_factory.mktemp("vols")
    rng = np.random.default_rng(0)
    rows = ["case_id,patient_id,site,modality,image"]
    for i in range(5):
        a = np.zeros((24, 24, 4), np.float32)
        a[3 + i : 21, 4:20] = 500
        p = save_nifti(Volume(a + rng.normal(0, 5, a.shape).astype(np.float32), np.eye(4)), d / f"v{i}.nii.gz")
        rows.append(f"c{i},p{i},s,MR,{p}")
    rows.append(f"bad,pb,s,MR,{d / 'missing.nii.gz'}")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    return d / "m.csv"


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.json"}


def test_two_worker_processes_write_the_same_bytes_as_one(volumes, tmp_path):
    m = load_manifest(volumes, check_files=False)
    one = tile_manifest(m, tmp_path / "w1", CFG, progress=False, workers=1)
    two = tile_manifest(m, tmp_path / "w2", CFG, progress=False, workers=2)
    for stats in (one, two):
        assert (stats["done"], stats["failed"], stats["failed_cases"]) == (5, 1, ["bad"])
    assert two["tiles"] == one["tiles"] > 0 and two["workers"] == 2
    a, b = _outputs(tmp_path / "w1"), _outputs(tmp_path / "w2")
    assert sorted(a) == sorted(b) == ["c0.tiles.h5", "c1.tiles.h5", "c2.tiles.h5", "c3.tiles.h5", "c4.tiles.h5",
                                      "failures.csv"]  # fmt: skip
    assert a == b  # byte for byte, the failure log too
    assert read_failures(tmp_path / "w2" / "failures.csv")[0]["error_class"] == "FileNotFound"
    assert not list((tmp_path / "w2").glob("*.claim")) and not list((tmp_path / "w2").rglob(".*"))
    # resumed: nothing to do, in either mode
    again = tile_manifest(m, tmp_path / "w2", CFG, progress=False, workers=2)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 5, 1)


def test_shards_cover_every_case_once(volumes, tmp_path):
    m = load_manifest(volumes, check_files=False)
    ids = sorted(c.case_id for c in m.cases)
    parts = [[c.case_id for c in shard_cases(m.cases, (i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == ids and all(len(p) == 2 for p in parts)
    assert sorted(parts[0]) == [ids[0], ids[3]]  # round-robin over the sorted ids, whatever the row order
    assert shard_cases(list(reversed(m.cases)), (0, 3))[::-1] == shard_cases(m.cases, (0, 3))
    out = tmp_path / "tiles"
    s0 = tile_manifest(m, out, CFG, progress=False, shard="0/2")
    s1 = tile_manifest(m, out, CFG, progress=False, shard=(1, 2))
    assert s0["shard"] == "0/2" and s0["total"] + s1["total"] == 6
    assert s0["done"] + s1["done"] == 5 and s0["skipped"] == s1["skipped"] == 0
    assert sorted(p.name for p in out.glob("*.tiles.h5")) == [f"c{i}.tiles.h5" for i in range(5)]
    assert [r["case_id"] for r in read_failures(out / "failures.csv")] == ["bad"]  # one log, shared


def test_shard_parsing_and_slurm_array():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == (3, 4)
    env = {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(env) == (1, 4)
    with pytest.raises(ConfigError, match="not a shard"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert resolve_shard(None) is None  # the library: every case unless told


def test_cli_flags_and_slurm_fallback(volumes, tmp_path, monkeypatch, capsys):
    from medwss.cli import tile

    parser = argparse.ArgumentParser()
    tile.register(parser.add_subparsers())
    args = parser.parse_args(["tile", str(volumes), "--out", str(tmp_path / "o"), "--workers", "2", "--shard", "1/3"])
    assert (args.workers, args.shard) == (2, "1/3")
    assert parser.parse_args(["tile", "m.csv", "--out", "o"]).workers == 1
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    (tmp_path / "t.yaml").write_text("qa: false\n")
    argv = ["tile", str(volumes), "--out", str(tmp_path / "o"), "--quiet", "--tile-size", "8", "--config",
            str(tmp_path / "t.yaml")]  # fmt: skip
    assert tile.run(parser.parse_args(argv)) == 3  # sorted ids bad, c0..c4: shard 0/3 holds bad and c2
    assert "tile [shard 0/3]: 1 done, 0 skipped, 1 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").glob("*.tiles.h5")) == ["c2.tiles.h5"]
    assert json.loads((tmp_path / "o" / "run.json").read_text())["metrics"]["shard"] == "0/3"
    with pytest.raises(ConfigError):
        tile.run(parser.parse_args([*argv, "--shard", "3/3"]))


def test_embed_shards_and_claims_share_one_folder(volumes, tmp_path, monkeypatch):
    from medwss.embed.engine import EmbedConfig
    from medwss.embed.job import embed_manifest

    m = load_manifest(volumes, check_files=False)
    tiles, bags = tmp_path / "tiles", tmp_path / "bags"
    tile_manifest(m, tiles, CFG, progress=False)
    cfg = EmbedConfig(encoder="stats", device="cpu")
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    (bags).mkdir()
    (bags / "c0.h5.claim").write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "time": time.time()}))
    s0 = embed_manifest(m, tiles, bags, cfg, progress=False, shard="0/2")  # bad, c1, c3 (c0 is in shard 1)
    s1 = embed_manifest(m, tiles, bags, cfg, progress=False, shard="1/2")  # c0 (claimed elsewhere), c2, c4
    assert (s0["done"], s0["failed"], s0["busy"]) == (2, 1, 0)
    assert (s1["done"], s1["failed"], s1["busy"]) == (2, 0, 1)
    assert sorted(p.stem for p in bags.glob("c*.h5")) == ["c1", "c2", "c3", "c4"]
    (bags / "c0.h5.claim").unlink()  # the other host finished without it: a plain re-run does the rest
    rest = embed_manifest(m, tiles, bags, cfg, progress=False)
    assert (rest["done"], rest["skipped"], rest["failed"]) == (1, 4, 1)
    assert [r["case_id"] for r in read_failures(bags / "failures.csv")] == ["bad"]


def test_two_processes_share_the_cases_through_claims(volumes, tmp_path, monkeypatch):
    """Two jobs (threads here) on one folder: each case tiled exactly once between them."""
    from medwss.data.manifest import Manifest

    loaded = load_manifest(volumes, check_files=False)
    m = Manifest(loaded.path, loaded.cases[-1:] + loaded.cases[:-1])  # the failing case first
    calls: list[str] = []
    real = tiling_job.tile_case

    def slow(case, cfg, out):  # noqa: ANN001, ANN202
        calls.append(case.case_id)
        time.sleep(0.15)
        return real(case, cfg, out)

    monkeypatch.setattr(tiling_job, "tile_case", slow)
    results: list[dict] = []
    jobs = [threading.Thread(target=lambda: results.append(tile_manifest(m, tmp_path / "o", CFG, progress=False)))
            for _ in range(2)]  # fmt: skip
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    # every case once between the two; the failed one too: its claim is kept until its process ends
    assert sorted(calls) == sorted(c.case_id for c in m.cases)
    assert sum(r["done"] for r in results) == 5 and sum(r["failed"] for r in results) == 1
    assert all(r["busy"] + r["skipped"] + r["done"] + r["failed"] == 6 for r in results)
    assert min(r["done"] + r["failed"] for r in results) >= 1  # the work was shared
    assert not list((tmp_path / "o").glob("*.claim"))


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path):
    mine, other = CaseClaims(tmp_path, timeout_s=5), CaseClaims(tmp_path, timeout_s=5)
    assert mine.claim("a.tiles.h5") and not other.claim("a.tiles.h5")  # live (this pid)
    info = json.loads((tmp_path / "a.tiles.h5.claim").read_text())
    assert info["pid"] == os.getpid() and "host" in info and "time" in info
    mine.release("a.tiles.h5")
    assert not (tmp_path / "a.tiles.h5.claim").exists() and other.claim("a.tiles.h5")
    other.release_all()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"pid": int(gone.stdout), "host": mine.host, "time": time.time()}
    (tmp_path / "b.claim").write_text(json.dumps(dead))  # its process has exited
    assert mine.claim("b")
    (tmp_path / "c.claim").write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": 0}))
    assert not mine.claim("c")  # another host's, fresh: kept
    old = time.time() - 60
    os.utime(tmp_path / "c.claim", (old, old))
    assert mine.claim("c")  # not refreshed for longer than the timeout: stale
    mine.release_all()


def test_shared_failure_log_from_threads_and_stale_temps(tmp_path):
    path = tmp_path / "failures.csv"

    def write(prefix: str) -> None:
        log = SharedFailureLog(path)
        for i in range(15):
            log.record(f"{prefix}{i:02d}", "img", ValueError("bad\nsecond line"))

    threads = [threading.Thread(target=write, args=(p,)) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_failures(path)
    assert [r["case_id"] for r in rows] == sorted(f"{p}{i:02d}" for p in "ab" for i in range(15))
    assert (rows[0]["error_class"], rows[0]["message"]) == ("ValueError", "bad") and not (
        tmp_path / "failures.csv.lock"
    ).exists()
    # temp files of killed writers: removed when older than the job start; a live writer's kept
    (tmp_path / "qa").mkdir()
    old, new = tmp_path / "qa" / ".x.png.abc.tmp.png", tmp_path / ".y.tiles.h5.def.tmp.tiles.h5"
    old.write_bytes(b"1")
    new.write_bytes(b"2")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert clean_stale_temps(tmp_path) == [old] and new.exists()
