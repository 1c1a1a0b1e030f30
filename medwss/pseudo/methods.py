"""Pseudo-label methods by name: one contract, one registry (`PSEUDO_METHODS`).

A method is ``run(cases, cfg, opts) -> (labels, extra)``: for every sliced case (`SliceCase`), a
list of per-slice int64 maps of the slice's shape with 0 = background, 1..K-1 = classes and
`IGNORE` (-1) where the method abstains, plus a dict of figures worth recording (``tau`` of the
fusion threshold, ...). Its settings come from `PseudoConfig` (``flags`` names the fields it
reads, which ``medwss pseudo <name>`` offers as flags); run-time options (a detector's box file,
the output folder for checkpoints and model files, progress bars) come in `MethodOptions`.

A new method is one module in `medwss.pseudo` with ``@register_pseudo_method("name", ...)`` on its
run function: the registry finds it on first lookup, the CLI offers ``medwss pseudo name``, and the
contract tests (tests/test_contracts.py) run it.

Example:
    >>> from medwss.pseudo.methods import PSEUDO_METHODS, MethodOptions
    >>> labels, extra = PSEUDO_METHODS.get("dhr").run(cases, cfg, MethodOptions())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medwss.registry import Registry

if TYPE_CHECKING:
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.volumes import SliceCase

Labels = list[list[np.ndarray] | None]  # None: a failed case (workflow.skipping_failed_cases)


@dataclass
class MethodOptions:
    """Run-time options of a method, besides its config.

    Attributes:
        boxes: Detector output (CSV/JSON) for ``box``; boxes from the masks if None.
        offline: ``agmm``: the GMM refiner on intensity/position, no training.
        progress: Show progress bars.
        out_dir: Where training methods checkpoint, resume and save their model file; None keeps nothing.
    """

    boxes: str | None = None
    offline: bool = False
    progress: bool = False
    out_dir: str | Path | None = None


RunFn = Callable[["Sequence[SliceCase]", "PseudoConfig", MethodOptions], tuple[Labels, dict[str, Any]]]


@dataclass(frozen=True)
class PseudoMethod:
    """A registered pseudo-label method.

    Attributes:
        name: Its name (``medwss pseudo <name>``).
        run: ``run(cases, cfg, opts) -> (labels, extra)`` (see the module docstring).
        help: One line for the CLI.
        flags: `PseudoConfig` fields the method reads (offered as flags besides the common ones).
        trains: Whether it may train a network (and so takes ``device``).
    """

    name: str
    run: RunFn
    help: str = ""
    flags: tuple[str, ...] = ()
    trains: bool = True


PSEUDO_METHODS: Registry[PseudoMethod] = Registry(
    "pseudo-label method", package="medwss.pseudo", marker="register_pseudo_method"
)
"""Every pseudo-label method; a module of `medwss.pseudo` that calls `register_pseudo_method` is found on first lookup."""


def register_pseudo_method(
    name: str, help: str = "", flags: Sequence[str] = (), trains: bool = True
) -> Callable[[RunFn], RunFn]:
    """Register ``run(cases, cfg, opts) -> (labels, extra)`` as the method `name` (a decorator)."""

    def decorate(run: RunFn) -> RunFn:
        PSEUDO_METHODS.register(name, PseudoMethod(name, run, help, tuple(flags), trains))
        return run

    return decorate


def _cams(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions, prefix: str = "") -> tuple[Any, Any]:
    from medwss.pseudo.workflow import compute_cams

    return compute_cams(cases, cfg, progress=opts.progress, out_dir=opts.out_dir, prefix=prefix)


_CAM = ("cam_source", "cam_epochs", "cam_tau")


@register_pseudo_method(
    "box",
    "segment inside boxes (random walker, Chan-Vese, Otsu, SAM/MedSAM)",
    ("segmenter", "checkpoint", "box_threshold", "ring"),
    trains=False,
)
def _box(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_box

    return run_box(cases, cfg, opts.boxes, progress=opts.progress), {}


@register_pseudo_method("cam", "plain activation-map threshold (the baseline every method is compared with)", _CAM)
def _cam(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import cam_baseline

    cams, _ = _cams(cases, cfg, opts)
    return cam_baseline(cams, cfg), {}


@register_pseudo_method("dhr", "Sinkhorn rebalancing of CAMs (DHR) so minor classes survive", (*_CAM, "prior", "eps"))
def _dhr(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_dhr

    cams, _ = _cams(cases, cfg, opts)
    return run_dhr(cases, cams, cfg), {}


@register_pseudo_method(
    "fuse",
    "foreground-prior fusion with a threshold and ignore band (WSSS-BED)",
    ("cam_source", "cam_epochs", "foreground", "tau", "band"),
)
def _fuse(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_fuse

    cams, _ = _cams(cases, cfg, opts)
    labels, tau = run_fuse(cases, cams, cfg)
    return labels, {"tau": tau}


@register_pseudo_method(
    "sweep", "Dice against the fusion threshold on the val split", ("cam_source", "cam_epochs", "foreground")
)
def _sweep(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_fuse, sweep

    cams, _ = _cams(cases, cfg, opts)
    labels, tau = run_fuse(cases, cams, cfg)
    return labels, {"tau": tau, "sweep": sweep(cases, cams, cfg)}


@register_pseudo_method(
    "agmm", "Gaussian-mixture learning from sparse labels (AGMM)", ("weak", "iterations", "confidence")
)
def _agmm(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_agmm

    return run_agmm(cases, cfg, offline=opts.offline, progress=opts.progress, out_dir=opts.out_dir), {}


@register_pseudo_method("cpal", "CAMs completed by context prototypes (CPAL)", (*_CAM, "contexts", "top_k", "alpha"))
def _cpal(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_cpal

    cams, feats = _cams(cases, cfg, opts)
    return run_cpal(cases, cams, feats, cfg), {}


@register_pseudo_method("par", "CAMs refined by pixel-adaptive affinity (PAR)", (*_CAM, "par_iter"))
def _par(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_par

    cams, _ = _cams(cases, cfg, opts)
    return run_par(cases, cams, cfg), {}


@register_pseudo_method(
    "dupl",
    "dual students with dynamic threshold and loss-GMM filter (DuPL)",
    (*_CAM, "iterations", "confidence"),
)
def _dupl(cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_dupl

    cams, _ = _cams(cases, cfg, opts, prefix="cam_")  # DuPL's own students are model.pt
    labels, history = run_dupl(cases, cams, cfg, progress=opts.progress, out_dir=opts.out_dir)
    return labels, {"final_tau": history[-1]["tau"], "discarded_last": history[-1]["discarded"]}


def run_method(
    name: str, cases: Sequence[SliceCase], cfg: PseudoConfig, opts: MethodOptions | None = None
) -> tuple[Labels, dict[str, Any]]:
    """Run the method registered as `name` (`UnknownNameError`, a `ConfigError`, if there is none)."""
    return PSEUDO_METHODS.get(name).run(cases, cfg, opts or MethodOptions())


__all__ = ["PSEUDO_METHODS", "MethodOptions", "PseudoMethod", "register_pseudo_method", "run_method"]
