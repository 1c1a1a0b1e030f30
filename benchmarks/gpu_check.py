"""GPU check: one short training of each kind, and the embedding throughput benchmark, on one device.

Usage:
    python benchmarks/gpu_check.py [--quick] [--device cuda] [--kinds mil_insight seg_unet ...] [--out DIR]

Each kind calls its workflow's library function on tiny synthetic data (no CLI, no files to fetch):
MIL (INSIGHT and ABMIL bags), SSL pretraining (`pretrain`), a 2D U-Net (`train_segmenter`, with the
MONAI augmentation pipeline on the device), the COIN slice classifier and GAN, the pseudo-label tag
classifier, AGMM and DuPL, the active-learning slice metric, and `benchmarks/embed_throughput.py`'s
`run`. For each run it records the wall time, optimiser steps and steps/s (counted by a global
optimiser hook), the peak GPU memory (`torch.cuda.max_memory_allocated`), and, from a global
forward hook, where the training forward passes ran: the devices of their inputs (the batch) and
of their parameters (the model), whether autocast was on (AMP really active where requested) and
the output dtypes. On CUDA each kind runs twice there (the first run pays the kernels' loading and
is kept as ``first_wall_s``), then once on the CPU, the same job side by side, for the CPU/CUDA
ratio. One kind failing is recorded (error class and message) and the others go on.

``--quick``: tiny sizes and one CPU thread (the test suite smoke-runs it; about 15 s). The full run is
sized for under 8 minutes on one H200 machine, most of it the CPU side (estimated from timings on
CPUs; not yet measured there). Results are written after every kind: ``benchmarks/results/gpu_check_<device>[_quick].json``
and ``.md`` (a quick run never overwrites a full one; `benchmarks/gpu_session.sh` runs it on a lent GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent


# ---- probes: optimiser steps and where the forward passes ran ------------------------------------


class Probe:
    """Global hooks for one run: optimiser steps, and the device/autocast/dtype of forward passes.

    Forward passes with gradients enabled are the training ones (validation and prediction run
    without); the first `limit` of each sort are inspected, all are counted.
    """

    def __init__(self, limit: int = 4000) -> None:
        self.limit = limit
        self.steps = 0
        self.calls = {"train": 0, "inference": 0}
        self.inputs: dict[str, Counter] = {"train": Counter(), "inference": Counter()}
        self.params: dict[str, Counter] = {"train": Counter(), "inference": Counter()}
        self.autocast: dict[str, int] = {"train": 0, "inference": 0}
        self.dtypes: dict[str, Counter] = {"train": Counter(), "inference": Counter()}
        self._handles: list[Any] = []

    def _forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        sort = "train" if torch.is_grad_enabled() else "inference"
        self.calls[sort] += 1
        if self.calls[sort] > self.limit:
            return
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if x is None and args and isinstance(getattr(args[0], "features", None), torch.Tensor):
            x = args[0].features  # a MIL `Bag`
        if x is not None:
            self.inputs[sort][x.device.type] += 1
            if _autocast_on(x.device.type):
                self.autocast[sort] += 1
        p = next(module.parameters(recurse=False), None)
        if p is not None:
            self.params[sort][p.device.type] += 1
        out = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            self.dtypes[sort][str(out.dtype).removeprefix("torch.")] += 1

    def _step(self, *_: Any) -> None:
        self.steps += 1

    def __enter__(self) -> Probe:
        from torch.nn.modules.module import register_module_forward_hook
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handles = [register_module_forward_hook(self._forward), register_optimizer_step_post_hook(self._step)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def summary(self, device: str, amp_requested: bool) -> dict[str, Any]:
        """What ran where: on_device (the model and its batches on `device`), amp_active, amp_ok."""
        sort = "train" if self.calls["train"] else "inference"
        want = torch.device(device).type
        seen = set(self.inputs[sort]) | set(self.params[sort])
        amp_expected = amp_requested and want == "cuda"
        amp_active = self.autocast[sort] > 0
        inspected = max(1, sum(self.inputs[sort].values()))
        return {
            "forward_sort": sort,
            "forward_calls": dict(self.calls),
            "input_devices": dict(self.inputs[sort]),
            "param_devices": dict(self.params[sort]),
            "output_dtypes": dict(self.dtypes[sort]),
            "on_device": bool(seen) and seen == {want},
            "amp_requested": amp_requested,
            "amp_expected": amp_expected,
            "amp_active": amp_active,
            "autocast_share": self.autocast[sort] / inspected,
            "amp_ok": amp_active == amp_expected,
        }


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument (CUDA only)
        return device_type == "cuda" and bool(torch.is_autocast_enabled())


# ---- one job: a library call on tiny data, its config filtered to what the library takes ----------


@dataclass
class Job:
    """What a kind's job gets: the device, the size, a fresh folder, and helpers that follow signatures.

    `config` and `call` pass only the settings the library's current signature knows (the loops are
    being ported onto the engine: an ``amp`` flag may appear), noting what was dropped.
    """

    device: str
    quick: bool
    work: Path
    amp_requested: bool = False
    dropped: list[str] = field(default_factory=list)

    def config(self, cls: Any, **kwargs: Any) -> Any:
        fields = getattr(cls, "model_fields", {})
        kept = {k: v for k, v in kwargs.items() if k in fields}
        self._note(cls.__name__, kwargs, kept)
        return cls(**kept)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        params = inspect.signature(fn).parameters
        open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kept = kwargs if open_kw else {k: v for k, v in kwargs.items() if k in params}
        self._note(fn.__name__, kwargs, kept)
        return fn(*args, **kept)

    def _note(self, name: str, given: dict[str, Any], kept: dict[str, Any]) -> None:
        self.dropped += [f"{name}.{k}" for k in given if k not in kept]
        if kept.get("amp") is True:
            self.amp_requested = True


def _grid_bags(n: int, side: int, dim: int, seed: int) -> list[Any]:
    """Bags on a side × side tile grid; positives hold a shifted 3 × 3 cluster."""
    from medwss.mil.base import Bag
    from medwss.mil.data import LabelledBag

    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    grid = torch.from_numpy(np.stack([rr.ravel(), cc.ravel()], 1).astype(np.int64))  # (N, 2)
    bags = []
    for i in range(n):
        x = rng.normal(size=(side * side, dim)).astype(np.float32)
        if i % 2:
            r, c = rng.integers(0, side - 2, 2)
            x.reshape(side, side, dim)[r : r + 3, c : c + 3] += 1.5
        bag = Bag(torch.from_numpy(x), grid, (side, side))  # no manifest case behind it
        bags.append(LabelledBag(None, bag, torch.tensor([float(i % 2)])))  # type: ignore[arg-type]
    return bags


def _mil(aggregator: str) -> Callable[[Job], dict[str, Any]]:
    def job(j: Job) -> dict[str, Any]:
        from medwss.mil.registry import create_aggregator
        from medwss.mil.train import MILTrainConfig, train

        n, side, dim, epochs = (8, 6, 16, 2) if j.quick else (32, 32, 256, 3)
        cfg = j.config(MILTrainConfig, aggregator=aggregator, epochs=epochs, min_epochs=1, patience=epochs,
                       device=j.device, amp=True, seed=0)  # fmt: skip
        torch.manual_seed(0)
        model = create_aggregator(aggregator, dim, 1)
        res = j.call(train, model, _grid_bags(n, side, dim, 0), _grid_bags(4, side, dim, 1), cfg, j.work,
                     torch.device(j.device), progress=False)  # fmt: skip
        return {"bags": n, "instances": side * side, "epochs": len(res["history"]),
                "train_loss": res["history"][-1]["train_loss"]}  # fmt: skip

    return job


def _tiles(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    """(N, C, S, S) tiles in [0, 1]: smooth blobs plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, channels, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i] = np.clip(blob[None] * rng.uniform(0.5, 1, (channels, 1, 1)) + rng.normal(0, 0.05, out[i].shape), 0, 1)
    return out


def _ssl(j: Job) -> dict[str, Any]:
    from medwss.embed.encoders import create_encoder
    from medwss.embed.pretrain.trainer import PretrainConfig, pretrain

    n, size, batch, epochs, widen = (16, 32, 8, 1, 0.125) if j.quick else (512, 96, 64, 2, 0.5)
    kw: dict[str, Any] = {"widen_factor": widen}
    cfg = j.config(PretrainConfig, encoder="resnet18", encoder_kwargs=kw, epochs=epochs, batch_size=batch,
                   device=j.device, amp=True, seed=0)  # fmt: skip
    encoder = create_encoder("resnet18", spatial_dims=2, in_channels=3, **kw)
    res = j.call(pretrain, encoder, torch.from_numpy(_tiles(n, 3, size, 0)), cfg, progress=False)
    return {"tiles": n, "size": size, "batch": batch, "loss": res["history"][-1]["loss"]}


def _disc_samples(n: int, size: int, seed: int) -> list[Any]:
    from medwss.seg.train import SegSample

    tiles = _tiles(n, 1, size, seed)
    return [SegSample(t, (t[0] > 0.5).astype(np.int64)) for t in tiles]


def _seg(j: Job) -> dict[str, Any]:
    from medwss.seg.train import SegTrainConfig, train_segmenter

    n, size, batch, epochs = (8, 32, 4, 1) if j.quick else (64, 128, 16, 2)
    chans = (8, 16, 32) if j.quick else (16, 32, 64, 128)
    cfg = j.config(SegTrainConfig, spatial_dims=2, channels=chans, epochs=epochs, batch_size=batch, augment=True,
                   device=j.device, amp=True, seed=0)  # fmt: skip
    _, hist = j.call(train_segmenter, _disc_samples(n, size, 0), cfg, val=_disc_samples(2, size, 1), progress=False)
    return {"images": n, "size": size, "batch": batch, "augment": "MONAI pipeline on the device",
            "val_dice": hist[-1].get("val_dice")}  # fmt: skip


def _slices(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, S, S) slices and labels: abnormal ones (odd) carry a bright blob."""
    x = _tiles(n, 1, size, seed) * 0.3
    y = np.arange(n) % 2
    x[y == 1] += 0.6 * _tiles(int(y.sum()), 1, size, seed + 1)
    return x, y.astype(np.int64)


def _coin_classifier(j: Job) -> dict[str, Any]:
    from medwss.counterfactual.classifier import ClassifierConfig, train_classifier

    n, size, batch, epochs = (16, 32, 8, 1) if j.quick else (256, 64, 32, 2)
    x, y = _slices(n, size, 0)
    cfg = j.config(ClassifierConfig, epochs=epochs, batch_size=batch, augment=True, device=j.device, amp=True, seed=0)
    _, losses = j.call(train_classifier, x, y, cfg, progress=False, checkpoint=j.work / "classifier.ckpt")
    return {"slices": n, "size": size, "batch": batch, "loss": losses[-1]}


def _coin_gan(j: Job) -> dict[str, Any]:
    from medwss.counterfactual.classifier import create_classifier
    from medwss.counterfactual.train import CoinConfig, train_coin

    n, size, batch, iters = (16, 32, 4, 3) if j.quick else (128, 64, 16, 40)
    x, y = _slices(n, size, 0)
    torch.manual_seed(0)
    classifier = create_classifier()  # untrained: the pools fall back to the labels
    cfg = j.config(CoinConfig, iterations=iters, batch_size=batch, device=j.device, amp=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, hist = j.call(train_coin, classifier, x, cfg, progress=False, labels=y,
                         checkpoint=j.work / "coin.ckpt")  # fmt: skip
    last = hist[-1] if hist else {}
    return {"slices": n, "size": size, "batch": batch, "iterations": iters, "kl": last.get("kl")}


def _pseudo_images(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(1, S, S) images and (S, S) label maps (0 background, 1 blob)."""
    tiles = _tiles(n, 1, size, seed)
    return [t for t in tiles], [(t[0] > 0.5).astype(np.int64) for t in tiles]


def _pseudo_tag(j: Job) -> dict[str, Any]:
    from medwss.pseudo.cams import add_coords, tags_from_labels, train_tag_classifier

    n, size, batch, epochs = (8, 32, 4, 1) if j.quick else (128, 96, 16, 2)
    images, labels = _pseudo_images(n, size, 0)
    labels = [lab * (i % 2) for i, lab in enumerate(labels)]  # half the images hold no foreground
    j.call(train_tag_classifier, [add_coords(im) for im in images], [tags_from_labels(lab, 2) for lab in labels],
           epochs=epochs, batch_size=batch, width=24, seed=0, progress=False, device=j.device, amp=True,
           checkpoint=j.work / "tags.ckpt")  # fmt: skip
    return {"images": n, "size": size, "batch": batch}


def _sparse(label: np.ndarray, seed: int) -> np.ndarray:
    from medwss.data.labels import IGNORE

    keep = np.random.default_rng(seed).random(label.shape) < 0.05
    return np.where(keep, label, IGNORE).astype(np.int64)


def _pseudo_agmm(j: Job) -> dict[str, Any]:
    from medwss.pseudo.agmm_train import train_agmm

    n, size, batch, iters = (4, 32, 2, 3) if j.quick else (64, 96, 8, 40)
    images, labels = _pseudo_images(n, size, 0)
    _, hist = j.call(train_agmm, images, [_sparse(lab, i) for i, lab in enumerate(labels)], 2, iterations=iters,
                     batch_size=batch, seed=0, progress=False, device=j.device, amp=True,
                     checkpoint=j.work / "agmm.ckpt")  # fmt: skip
    return {"images": n, "size": size, "batch": batch, "objective": hist[-1] if hist else None}


def _pseudo_dupl(j: Job) -> dict[str, Any]:
    from medwss.pseudo.dupl import DuPLConfig, train_dupl

    n, size, batch, iters = (4, 32, 2, 3) if j.quick else (64, 96, 8, 40)
    images, labels = _pseudo_images(n, size, 0)
    cfg = j.config(DuPLConfig, iterations=iters, batch_size=batch, warmup=max(1, iters // 4), device=j.device,
                   amp=True, seed=0)  # fmt: skip
    _, hist = j.call(train_dupl, images, labels, 2, cfg, progress=False, checkpoint=j.work / "dupl.ckpt")
    return {"images": n, "size": size, "batch": batch, "iterations": iters}


def _al_metric(j: Job) -> dict[str, Any]:
    from medwss.active.metric import MetricConfig, train_metric

    n, size, batch, epochs = (16, 32, 8, 1) if j.quick else (512, 64, 64, 2)
    volume = np.arange(n) // 8
    cfg = j.config(MetricConfig, epochs=epochs, batch_size=batch, device=j.device, amp=True, seed=0)
    _, hist = j.call(train_metric, _tiles(n, 1, size, 0), volume, volume // 2, np.arange(n) % 8, cfg,
                     progress=False, checkpoint=j.work / "metric.ckpt")  # fmt: skip
    return {"slices": n, "size": size, "batch": batch, "loss": hist[-1]["loss"] if hist else None}


_SLIDES: dict[tuple[Path, float], Path] = {}
"""Phantom slides made once per run folder and scale (the CUDA and CPU runs share one)."""


def _embed(j: Job) -> dict[str, Any]:
    import runpy

    bench = runpy.run_path(str(BENCH / "embed_throughput.py"))
    key = (j.work.parent, 0.3 if j.quick else 2.0)
    if key not in _SLIDES:
        folder = j.work.parent / f"phantom_{key[1]}"
        _SLIDES[key] = bench["_phantom_slide"](folder, key[1])[0]
    slide = _SLIDES[key]
    encoder, tile, batch, repeats, tiles = ("stats", 64, 16, 1, 32) if j.quick else ("resnet18", 224, 64, 2, 256)
    j.amp_requested = True  # (a) and (b) run under float16 autocast on CUDA
    res = bench["run"](slide_path=slide, encoder_name=encoder, tile=tile, mpp=None, batch=batch, device=j.device,
                       repeats=repeats, max_tiles=tiles)  # fmt: skip
    return {"encoder": encoder, "tiles": res["tiles"], "tile": tile, "tiles_per_s": res["tiles_per_s"],
            "ratio_a_over_b": res["ratio_a_over_b"], "ratio_a_over_c": res["ratio_a_over_c"]}  # fmt: skip


KINDS: dict[str, Callable[[Job], dict[str, Any]]] = {
    "mil_insight": _mil("insight"),
    "mil_abmil": _mil("abmil"),
    "ssl_pretrain": _ssl,
    "seg_unet": _seg,
    "coin_classifier": _coin_classifier,
    "coin_gan": _coin_gan,
    "pseudo_tag": _pseudo_tag,
    "pseudo_agmm": _pseudo_agmm,
    "pseudo_dupl": _pseudo_dupl,
    "al_metric": _al_metric,
    "embed_throughput": _embed,
}
"""Each kind: a job calling its workflow's library function on tiny synthetic data."""


# ---- running ----------------------------------------------------------------------------------------

_MODULES = (
    "medwss.mil.registry", "medwss.mil.train", "medwss.embed.encoders", "medwss.embed.pretrain.trainer",
    "medwss.seg.train", "medwss.counterfactual.classifier", "medwss.counterfactual.train", "medwss.pseudo.cams",
    "medwss.pseudo.agmm_train", "medwss.pseudo.dupl", "medwss.active.metric", "medwss.embed.engine",
    "medwss.data.phantoms", "monai.transforms",
)  # fmt: skip


def preload() -> float:
    """Import the workflows before timing (an import error shows up in the kind that needs it); returns seconds."""
    import importlib

    t0 = time.perf_counter()
    for name in _MODULES:
        with contextlib.suppress(Exception):  # an import error is recorded by the kind's own run
            importlib.import_module(name)
    w = torch.nn.Parameter(torch.zeros(1))
    torch.optim.Adam([w]).step()  # the first optimiser step imports torch._dynamo (seconds)
    return time.perf_counter() - t0


def run_once(kind: str, device: str, quick: bool, root: Path) -> dict[str, Any]:
    """One run of a kind on a device, in a fresh folder; never raises (a failure is recorded)."""
    cuda = torch.device(device).type == "cuda"
    work = Path(tempfile.mkdtemp(prefix=f"{kind}_{torch.device(device).type}_", dir=root))
    job = Job(device, quick, work)
    probe = Probe()
    rec: dict[str, Any] = {"device": device, "peak_gpu_mem_mb": None}
    t0 = time.perf_counter()
    try:
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
        with probe, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            extra = KINDS[kind](job)
        if cuda:
            torch.cuda.synchronize(device)
        rec.update(ok=True, wall_s=time.perf_counter() - t0, result=extra)
        if cuda:
            rec["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    except Exception as e:  # one kind failing is recorded, the others go on
        rec.update(ok=False, wall_s=time.perf_counter() - t0, error=type(e).__name__, message=str(e)[:2000],
                   traceback=traceback.format_exc(limit=-6)[-4000:])  # fmt: skip
    rec["optimizer_steps"] = probe.steps
    rec["steps_per_s"] = probe.steps / rec["wall_s"] if probe.steps and rec["wall_s"] > 0 else None
    if cuda and not rec["ok"]:
        with contextlib.suppress(Exception):  # memory of a failed run: freed before the next kind
            gc.collect()
            torch.cuda.empty_cache()
    rec.update(probe.summary(device, job.amp_requested))
    rec["checks_ok"] = bool(rec["ok"] and rec["on_device"] and rec["amp_ok"])
    rec["dropped_settings"] = job.dropped
    return rec


def run_kind(kind: str, device: str, quick: bool, root: Path, compare_cpu: bool) -> dict[str, Any]:
    """A kind on `device` (twice on CUDA: the first run loads the kernels), then on the CPU for the ratio."""
    runs: dict[str, Any] = {}
    first = None
    if torch.device(device).type == "cuda":
        first = run_once(kind, device, quick, root)
    runs["main"] = run_once(kind, device, quick, root)
    if first is not None:
        runs["main"]["first_wall_s"] = first["wall_s"]
        if not first["ok"] and runs["main"]["ok"]:
            runs["main"]["first_error"] = f"{first['error']}: {first['message']}"
    if compare_cpu and torch.device(device).type == "cuda":
        runs["cpu"] = run_once(kind, "cpu", quick, root)
    main, cpu = runs["main"], runs.get("cpu")
    out: dict[str, Any] = {
        "ok": all(r["ok"] for r in runs.values()),
        "checks_ok": all(r["checks_ok"] for r in runs.values()),
        **runs,
    }
    if cpu is not None and main["ok"] and cpu["ok"]:
        out["cpu_over_cuda_time"] = cpu["wall_s"] / main["wall_s"]
    failed = [r for r in runs.values() if not r["ok"]]
    if failed:
        out["error"], out["message"] = failed[0]["error"], failed[0]["message"]
    return out


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def to_markdown(r: dict[str, Any]) -> str:
    lines = [
        f"GPU check on {r['device']} ({r['device_name']}){' — quick' if r['quick'] else ''}"
        f"{'' if r.get('complete', True) else ' — incomplete (kinds still to run)'}, torch {r['torch']}, "
        f"{r['torch_threads']} CPU threads, {r['total_s']:.0f} s in all (imports {r['import_s']:.0f} s). "
        "On CUDA: wall s is the second run, first s the first (kernel loading); CPU s the same job on the CPU.\n",
        "| kind | status | wall s | first s | steps | steps/s | peak GPU MiB | AMP active (expected) "
        "| model+batch on | CPU s | CPU/CUDA time |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for kind, k in r["kinds"].items():
        m, cpu = k["main"], k.get("cpu") or {}
        status = "ok" if k["ok"] and k["checks_ok"] else (f"**{k['error']}**" if not k["ok"] else "**check failed**")
        rate = _fmt(m["steps_per_s"], ".1f")
        if "tiles_per_s" in (m.get("result") or {}):
            rate = f"{m['result']['tiles_per_s']['a_medwss_embed']:.0f} tiles/s"
        where = "/".join(sorted(set(m["input_devices"]) | set(m["param_devices"]))) or "nothing seen"
        lines.append(
            f"| {kind} | {status} | {_fmt(m['wall_s'])} | {_fmt(m.get('first_wall_s'))} | {m['optimizer_steps']} "
            f"| {rate} | {_fmt(m['peak_gpu_mem_mb'], '.0f')} | {m['amp_active']} ({m['amp_expected']}) "
            f"| {where}{'' if m['on_device'] else ' **off device**'} | {_fmt(cpu.get('wall_s'))} "
            f"| {_fmt(k.get('cpu_over_cuda_time'))} |"
        )
    errors = [f"- {kind}: {k['error']}: {(k['message'] or '').splitlines()[0] if k['message'] else ''}"
              for kind, k in r["kinds"].items() if not k["ok"]]  # fmt: skip
    if errors:
        lines += ["", "Failures:", *errors]
    dropped = sorted({d for k in r["kinds"].values() for run in (k["main"], k.get("cpu") or {})
                      for d in run.get("dropped_settings", [])})  # fmt: skip
    if dropped:
        lines += ["", f"Settings the library functions do not take (left out): {', '.join(dropped)}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import versions, write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU fine; the smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="a subset of the kinds")
    ap.add_argument("--no-cpu", action="store_true", help="on CUDA, skip the side-by-side CPU runs")
    ap.add_argument("--threads", type=int, help="CPU threads of torch (default: 1 with --quick, else torch's own)")
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _h200)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {dev} but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads or args.quick:  # one thread: tiny CPU jobs on a shared machine would spin-wait for cores
        torch.set_num_threads(args.threads or 1)
    t0 = time.perf_counter()
    import_s = preload()
    name = f"gpu_check_{dev.type}{'_quick' if args.quick else ''}{args.tag}"
    record: dict[str, Any] = {
        "benchmark": "gpu_check",
        "quick": args.quick,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "import_s": import_s,
        "kinds_asked": args.kinds,
        "kinds": {},
    }
    kinds: dict[str, Any] = record["kinds"]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for i, kind in enumerate(args.kinds):
            print(f"[gpu_check] {kind} on {dev} ...", file=sys.stderr, flush=True)
            kinds[kind] = k = run_kind(kind, str(dev), args.quick, Path(tmp), compare_cpu=not args.no_cpu)
            print(f"[gpu_check] {kind}: {'ok' if k['ok'] else k['error']} in {k['main']['wall_s']:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            record["total_s"] = time.perf_counter() - t0
            record["complete"] = i == len(args.kinds) - 1
            record["failed"] = [n for n, v in kinds.items() if not v["ok"]]
            record["checks_failed"] = [n for n, v in kinds.items() if v["ok"] and not v["checks_ok"]]
            # written after every kind: a run stopped at its time limit keeps what it measured
            write_results(args.out, name, record, to_markdown(record), echo=bool(record["complete"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
