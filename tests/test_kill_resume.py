"""``kill -9`` of `medwss tile` and `medwss embed` mid-run: no half-written output, and a re-run ends where an
uninterrupted run does (the engine, AGMM and segmenter trainings have theirs in tests/train).

The child process is the real CLI with one change: after its first output is committed, its next
atomic write stops with the temporary file open, so the kill lands mid-write every time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medwss.cli.main import main

CHILD = """
import contextlib, sys, time
import medwss.io.atomic as atomic
real, done = atomic.atomic_path, []

@contextlib.contextmanager
def stalling(target):
    with real(target) as tmp:
        if str(target).endswith(".h5") and any(str(d).endswith(".h5") for d in done):
            open(tmp, "ab").write(b"half")
            time.sleep(120)  # killed here: a temporary file half written, the target not yet renamed
        yield tmp
    done.append(target)

atomic.atomic_path = stalling
from medwss.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    from medwss.data.phantoms import generate

    return generate("wsi", tmp_path_factory.mktemp("wsi"), n=2, seed=3, scale=0.25, progress=False)


def _kill_mid_run(argv: list[str], out: Path, pattern: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], env=env)
    deadline = time.time() + 90
    try:
        while time.time() < deadline and proc.poll() is None:
            if _outputs(out, pattern) and list(out.glob(".*.tmp*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the child ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _outputs(out: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in out.glob(pattern) if not p.name.startswith("."))


def _age_temps(out: Path) -> list[Path]:
    temps = list(out.rglob(".*.tmp*"))
    for t in temps:  # as if the killed run were an hour old: a new run removes them on start
        os.utime(t, (time.time() - 3600, time.time() - 3600))
    return temps


def _same_h5(a: Path, b: Path) -> None:
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names: list[str] = []
        fa.visit(names.append)
        for n in names:
            if isinstance(fa[n], h5py.Dataset):
                np.testing.assert_array_equal(fa[n][()], fb[n][()], err_msg=f"{a.name}:{n}")


@pytest.mark.slow  # two CLI subprocesses (torch imports): ~10 s of CPU
def test_tile_and_embed_survive_kill_9(slides, tmp_path):
    import torch

    torch.set_num_threads(1)
    tile = ["tile", str(slides), "--mpp", "4.0", "--tile-size", "32", "--quiet"]
    ref_tiles, tiles = tmp_path / "ref_tiles", tmp_path / "tiles"
    assert main([*tile, "--out", str(ref_tiles)]) == 0
    _kill_mid_run([*tile, "--out", str(tiles)], tiles, "*.tiles.h5")
    assert len(_outputs(tiles, "*.tiles.h5")) == 1 and _age_temps(tiles)  # mid-run, a temporary file left
    assert main([*tile, "--out", str(tiles)]) == 0
    assert not list(tiles.rglob(".*.tmp*"))
    finished = _outputs(tiles, "*.tiles.h5")
    assert finished == _outputs(ref_tiles, "*.tiles.h5") and len(finished) == 2
    for name in finished:
        _same_h5(ref_tiles / name, tiles / name)

    embed = ["embed", str(slides), "--tiles", str(ref_tiles), "--encoder", "stats", "--device", "cpu", "--quiet"]
    ref_bags, bags = tmp_path / "ref_bags", tmp_path / "bags"
    assert main([*embed, "--out", str(ref_bags)]) == 0
    _kill_mid_run([*embed, "--out", str(bags)], bags, "*.h5")
    assert len(_outputs(bags, "*.h5")) == 1 and _age_temps(bags)
    assert main([*embed, "--out", str(bags)]) == 0
    assert not list(bags.rglob(".*.tmp*"))
    finished = _outputs(bags, "*.h5")
    assert finished == _outputs(ref_bags, "*.h5") and len(finished) == 2
    for name in finished:
        _same_h5(ref_bags / name, bags / name)
