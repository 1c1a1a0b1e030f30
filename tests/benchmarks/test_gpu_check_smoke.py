"""The GPU check runs every kind in quick mode on the CPU: one entry per kind, none failed, all on the device."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow  # 14 s on two idle cores, over 30 s when they are shared
def test_gpu_check_quick_on_cpu(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_check_cpu_quick.json").read_text())
    assert res["quick"] and res["device"] == "cpu"
    assert set(res["kinds"]) == set(mod["KINDS"])
    failed = {k: f"{v.get('error')}: {v.get('message')}" for k, v in res["kinds"].items() if not v["ok"]}
    assert not failed and res["failed"] == []
    for kind, k in res["kinds"].items():
        run = k["main"]
        assert run["device"] == "cpu" and "cpu" not in k  # no side-by-side CPU run when the device is the CPU
        assert run["on_device"] and run["input_devices"] == {"cpu": run["input_devices"]["cpu"]}, kind
        assert run["amp_ok"] and not run["amp_active"], kind  # autocast is CUDA-only
        assert run["wall_s"] > 0 and run["peak_gpu_mem_mb"] is None
        if kind != "embed_throughput":
            assert run["optimizer_steps"] > 0 and run["steps_per_s"] > 0, kind
    assert res["kinds"]["embed_throughput"]["main"]["result"]["tiles_per_s"]["a_medwss_embed"] > 0
    md = (tmp_path / "gpu_check_cpu_quick.md").read_text()
    assert "| kind | status |" in md and md.count("| ok |") == len(mod["KINDS"])
