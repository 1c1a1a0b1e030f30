"""Pseudo-label methods by name: one contract, one registry (`PSEUDO_METHODS`).

A method is ``run(cases, cfg, opts) -> (labels, extra)``: for every sliced case (`SliceCase`), a
list of per-slice int64 maps of the slice's shape with 0 = background, 1..K-1 = classes and
`IGNORE` (-1) where the method abstains, plus a dict of figures worth recording (``tau`` of the
fusion threshold, ...). Its settings are its own config class (``config`` of the entry, a
subclass of `medwss.pseudo.config.PseudoConfig` holding exactly the fields it reads): ``medwss
pseudo <name>`` offers those fields as flags and reads them from the YAML, and a key the method
does not read is an error. Run-time options (a detector's box file, the output folder for
checkpoints and model files, progress bars) come in `MethodOptions`.

Every entry also gives the `medwss.pseudo.protocol.PseudoLabelMethod` shape: ``create(cfg,
opts)`` binds it to its settings, ``fit(cases)`` runs it over all cases (the methods are
transductive: CAM classifiers, class priors, prototypes and the fusion threshold use every case),
and ``predict(case)`` returns a fitted case's per-slice maps.

A new method is one module in `medwss.pseudo` with ``@register_pseudo_method("name", help,
config=MyConfig)`` on its run function: the registry finds it on first lookup, the CLI offers
``medwss pseudo name`` with MyConfig's flags, and the contract tests (tests/test_contracts.py) run it.

Example:
    >>> from medwss.pseudo.methods import MethodOptions, create_method
    >>> dhr = create_method("dhr", {"labels": "totalseg", "prior": "uniform"}).fit(cases)  # doctest: +SKIP
    >>> dhr.predict(cases[0])[0].shape == cases[0].images[0].shape[-2:]  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ValidationError

from medwss.errors import ConfigError, InvalidDataError
from medwss.pseudo.config import (
    AgmmPseudoConfig,
    BoxPseudoConfig,
    CamMapSettings,
    CamPseudoConfig,
    CpalPseudoConfig,
    DhrPseudoConfig,
    DuplPseudoConfig,
    FusePseudoConfig,
    ParPseudoConfig,
    PseudoConfig,
    ReachPseudoConfig,
)
from medwss.registry import Registry

if TYPE_CHECKING:
    from medwss.pseudo.volumes import SliceCase

Labels = list[list[np.ndarray] | None]  # None: a failed case (workflow.per_case in an active medwss.jobs.Job)


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


RunFn = Callable[["Sequence[SliceCase]", Any, MethodOptions], tuple[Labels, dict[str, Any]]]
Settings = PseudoConfig | Mapping[str, Any] | None


@dataclass(frozen=True)
class PseudoMethod:
    """A registered pseudo-label method.

    Attributes:
        name: Its name (``medwss pseudo <name>``).
        run: ``run(cases, cfg, opts) -> (labels, extra)`` (see the module docstring); `cfg` is a `config`.
        config: Its config class: exactly the settings it reads (its flags and YAML keys).
        help: One line for the CLI.
        trains: Whether it may train a network (on ``device``).
    """

    name: str
    run: RunFn
    config: type[PseudoConfig] = PseudoConfig
    help: str = ""
    trains: bool = True

    def settings(self, cfg: Settings = None, *, only_read: bool = False) -> PseudoConfig:
        """`cfg` as this method's config: an instance of `config` as is; another config (its fields
        set explicitly) or a mapping validated by `config`.

        Args:
            only_read: Drop the keys `config` has no field for (a pool of settings shared by several
                methods, as the benchmarks keep) instead of refusing them.

        Raises:
            ConfigError: One line naming each key the method does not read or each invalid value.
        """
        if isinstance(cfg, self.config):
            return cfg
        if cfg is None:
            values: dict[str, Any] = {}
        elif isinstance(cfg, BaseModel):
            values = cfg.model_dump(exclude_unset=True)
        else:
            values = dict(cfg)
        if only_read:
            values = {k: v for k, v in values.items() if k in self.config.model_fields}
        try:
            return self.config.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"pseudo {self.name} ({self.config.__name__}): {problems}") from exc

    def create(self, cfg: Settings = None, opts: MethodOptions | None = None) -> FittedMethod:
        """The method bound to its settings and options (a `PseudoLabelMethod`; call ``fit(cases)``)."""
        return FittedMethod(self, self.settings(cfg), opts or MethodOptions())


class FittedMethod:
    """A registry method bound to its config and options: the `PseudoLabelMethod` of an entry.

    ``fit(cases)`` runs the method over all the cases at once (every registered method is
    transductive) and keeps each case's maps; ``predict(case)`` returns the maps of a case given
    to ``fit`` (the same object, else the same ``case_id``), None for a case that failed inside an
    active `medwss.jobs.Job` (`medwss.pseudo.workflow.per_case`). To label new volumes with a
    trained AGMM/DuPL network, use its model file (`medwss.pseudo.predict`).

    Attributes:
        name: The method's name.
        config: Its settings (an instance of the entry's config class).
        options: Run-time options.
        extra: Figures of the last ``fit`` (``tau``, ...); empty before.
    """

    def __init__(self, method: PseudoMethod, config: PseudoConfig, options: MethodOptions) -> None:
        self.method = method
        self.name = method.name
        self.config = config
        self.options = options
        self.extra: dict[str, Any] = {}
        self._cases: list[SliceCase] = []
        self._labels: Labels = []
        self._by_object: dict[int, int] = {}
        self._by_case_id: dict[str, int] = {}

    def fit(self, cases: Sequence[SliceCase]) -> FittedMethod:
        """Run the method on `cases` (all at once); returns self."""
        labels, extra = self.method.run(cases, self.config, self.options)
        if len(labels) != len(cases):
            raise InvalidDataError(f"pseudo {self.name}: {len(labels)} label lists for {len(cases)} cases")
        self._cases, self._labels, self.extra = list(cases), list(labels), dict(extra)
        self._by_object = {id(c): i for i, c in enumerate(self._cases)}  # the cases are kept: ids stay valid
        self._by_case_id = {}
        for i, c in enumerate(self._cases):
            self._by_case_id.setdefault(c.case_id, i)
        return self

    def predict(self, case: SliceCase) -> list[np.ndarray] | None:
        """Per slice of `case`, its int64 map (slice shape, `IGNORE` where the method abstains).

        Raises:
            InvalidDataError: `case` was not among the cases given to ``fit``.
        """
        i = self._by_object.get(id(case))
        if i is None or self._cases[i] is not case:
            i = self._by_case_id.get(case.case_id)
        if i is not None:
            return self._labels[i]
        raise InvalidDataError(
            f"pseudo {self.name}: case {case.case_id} was not fitted (the method labels the cases given to fit)"
        )


PSEUDO_METHODS: Registry[PseudoMethod] = Registry(
    "pseudo-label method", package="medwss.pseudo", marker="register_pseudo_method"
)
"""Every pseudo-label method; a module of `medwss.pseudo` that calls `register_pseudo_method` is found on first lookup."""


def register_pseudo_method(
    name: str, help: str = "", config: type[PseudoConfig] = PseudoConfig, trains: bool = True
) -> Callable[[RunFn], RunFn]:
    """Register ``run(cases, cfg, opts) -> (labels, extra)`` as the method `name` with its `config` class (a decorator)."""

    def decorate(run: RunFn) -> RunFn:
        PSEUDO_METHODS.register(name, PseudoMethod(name, run, config, help, trains))
        return run

    return decorate


def _cams(cases: Sequence[SliceCase], cfg: CamMapSettings, opts: MethodOptions, prefix: str = "") -> tuple[Any, Any]:
    from medwss.pseudo.workflow import compute_cams

    return compute_cams(cases, cfg, progress=opts.progress, out_dir=opts.out_dir, prefix=prefix)


@register_pseudo_method(
    "box", "segment inside boxes (random walker, Chan-Vese, Otsu, GrabCut, SAM/MedSAM)", BoxPseudoConfig, trains=False
)
def _box(cases: Sequence[SliceCase], cfg: BoxPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_box

    return run_box(cases, cfg, opts.boxes, progress=opts.progress), {}


@register_pseudo_method(
    "cam", "plain activation-map threshold (the baseline every method is compared with)", CamPseudoConfig
)
def _cam(cases: Sequence[SliceCase], cfg: CamPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import cam_baseline

    cams, _ = _cams(cases, cfg, opts)
    return cam_baseline(cams, cfg), {}


@register_pseudo_method("dhr", "Sinkhorn rebalancing of CAMs (DHR) so minor classes survive", DhrPseudoConfig)
def _dhr(cases: Sequence[SliceCase], cfg: DhrPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_dhr

    cams, _ = _cams(cases, cfg, opts)
    return run_dhr(cases, cams, cfg), {}


@register_pseudo_method("fuse", "foreground-prior fusion with a threshold and ignore band (WSSS-BED)", FusePseudoConfig)
def _fuse(cases: Sequence[SliceCase], cfg: FusePseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_fuse

    cams, _ = _cams(cases, cfg, opts)
    labels, tau = run_fuse(cases, cams, cfg)
    return labels, {"tau": tau}


@register_pseudo_method("sweep", "Dice against the fusion threshold on the val split", FusePseudoConfig)
def _sweep(cases: Sequence[SliceCase], cfg: FusePseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_fuse, sweep

    cams, _ = _cams(cases, cfg, opts)
    labels, tau = run_fuse(cases, cams, cfg)
    return labels, {"tau": tau, "sweep": sweep(cases, cams, cfg)}


@register_pseudo_method("agmm", "Gaussian-mixture learning from sparse labels (AGMM)", AgmmPseudoConfig)
def _agmm(cases: Sequence[SliceCase], cfg: AgmmPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_agmm

    return run_agmm(cases, cfg, offline=opts.offline, progress=opts.progress, out_dir=opts.out_dir), {}


@register_pseudo_method(
    "reach", "sparse labels + background beyond a distance of the foreground ones", ReachPseudoConfig
)
def _reach(cases: Sequence[SliceCase], cfg: ReachPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_reach

    return run_reach(cases, cfg), {}


@register_pseudo_method("cpal", "CAMs completed by context prototypes (CPAL)", CpalPseudoConfig)
def _cpal(cases: Sequence[SliceCase], cfg: CpalPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_cpal

    cams, feats = _cams(cases, cfg, opts)
    return run_cpal(cases, cams, feats, cfg), {}


@register_pseudo_method("par", "CAMs refined by pixel-adaptive affinity (PAR)", ParPseudoConfig)
def _par(cases: Sequence[SliceCase], cfg: ParPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_par

    cams, _ = _cams(cases, cfg, opts)
    return run_par(cases, cams, cfg), {}


@register_pseudo_method("dupl", "dual students with dynamic threshold and loss-GMM filter (DuPL)", DuplPseudoConfig)
def _dupl(cases: Sequence[SliceCase], cfg: DuplPseudoConfig, opts: MethodOptions) -> tuple[Labels, dict[str, Any]]:
    from medwss.pseudo.workflow import run_dupl

    cams, _ = _cams(cases, cfg, opts, prefix="cam_")  # DuPL's own students are model.pt
    labels, history = run_dupl(cases, cams, cfg, progress=opts.progress, out_dir=opts.out_dir)
    return labels, {"final_tau": history[-1]["tau"], "discarded_last": history[-1]["discarded"]}


def create_method(name: str, cfg: Settings = None, opts: MethodOptions | None = None) -> FittedMethod:
    """The method registered as `name`, bound to `cfg` (validated by its config class) and `opts`.

    Raises:
        UnknownNameError: No method is registered as `name` (a `ConfigError`).
        ConfigError: `cfg` sets a key the method does not read, or an invalid value.
    """
    return PSEUDO_METHODS.get(name).create(cfg, opts)


def config_for(name: str, cfg: Settings = None, *, only_read: bool = False) -> PseudoConfig:
    """The config of method `name` from `cfg` (see `PseudoMethod.settings`; `only_read` drops keys it does not read)."""
    return PSEUDO_METHODS.get(name).settings(cfg, only_read=only_read)


def run_method(
    name: str, cases: Sequence[SliceCase], cfg: Settings = None, opts: MethodOptions | None = None
) -> tuple[Labels, dict[str, Any]]:
    """Run the method registered as `name` on `cases`: per case its maps (None: failed), and the extra figures.

    ``create_method(name, cfg, opts).fit(cases)``, then ``predict`` of every case.

    Raises:
        UnknownNameError: No method is registered as `name` (a `ConfigError`).
        ConfigError: `cfg` sets a key the method does not read, or an invalid value.
    """
    fitted = create_method(name, cfg, opts).fit(cases)
    return [fitted.predict(c) for c in cases], fitted.extra


__all__ = [
    "PSEUDO_METHODS",
    "FittedMethod",
    "MethodOptions",
    "PseudoMethod",
    "config_for",
    "create_method",
    "register_pseudo_method",
    "run_method",
]
