"""Registry-wide contract tests: every entry of every registry, on tiny seeded input, no hand-kept lists.

Each test iterates a `medwss.registry.Registry` (so a new aggregator, encoder, weak-label kind,
pseudo-label method, ... is tested the moment it registers) and checks the kind's contract:
shapes, value ranges, no NaN, determinism, a backward pass where there are parameters. The
method-specific behaviour (does it find the lesion?) stays in each area's own tests.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.active.features import FEATURES, FeatureFn
from medwss.active.strategies import STRATEGIES, SelectionContext, Strategy
from medwss.counterfactual.attribution import ATTRIBUTIONS, Attribution, attribute
from medwss.data.builders import BUILDERS
from medwss.data.builders._common import DatasetBuilder
from medwss.data.labels import IGNORE
from medwss.data.phantoms import PHANTOMS
from medwss.data.phantoms.common import PhantomGenerator
from medwss.data.weak import WEAK_KINDS, make_weak_label
from medwss.embed.encoders import ENCODERS
from medwss.errors import ConfigError
from medwss.io.slide import SLIDE_BACKENDS
from medwss.io.volumes import VOLUME_READERS
from medwss.mil.base import AGGREGATORS, Bag
from medwss.mil.pooling import POOLS, create_pool
from medwss.pseudo.methods import PSEUDO_METHODS, MethodOptions, run_method
from medwss.pseudo.protocol import Box, PromptableSegmenter, PseudoLabelMethod
from medwss.pseudo.segmenters import BOX_SEGMENTERS, create_box_segmenter
from medwss.registry import DuplicateNameError, Registry, UnknownNameError
from medwss.seg.networks import SEGMENTERS, SegmenterFactory, create_segmenter
from medwss.train.model_file import MODEL_KINDS, BuildFn

torch.set_num_threads(1)

REGISTRIES = {
    "aggregator": AGGREGATORS,
    "pooling": POOLS,
    "encoder": ENCODERS,
    "segmenter": SEGMENTERS,
    "box segmenter": BOX_SEGMENTERS,
    "attribution": ATTRIBUTIONS,
    "strategy": STRATEGIES,
    "features": FEATURES,
    "weak label kind": WEAK_KINDS,
    "pseudo-label method": PSEUDO_METHODS,
    "dataset": BUILDERS,
    "phantom": PHANTOMS,
    "volume reader": VOLUME_READERS,
    "slide backend": SLIDE_BACKENDS,
    "model kind": MODEL_KINDS,
}


# ---------------------------------------------------------------------------------------------
# the registry type itself


def test_registry_registers_refuses_duplicates_and_lists_known_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b() -> None: ...

    assert list(reg) == ["a", "b"] and "a" in reg and "z" not in reg and len(reg) == 2 and reg["b"] is b
    reg.register("a", 1)  # the same entry again (a module imported twice) is fine
    with pytest.raises(DuplicateNameError, match="widget 'a' is registered twice"):
        reg.register("a", 2)
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'zz'; known widgets: a, b$") as err:
        reg.get("zz")
    assert isinstance(err.value, ConfigError) and err.value.known == ["a", "b"] and "\n" not in str(err.value)


def test_discovery_imports_a_module_nobody_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from medwss.registry import Registry\n"
                                     "THINGS = Registry('thing', package='plugpkg', marker='THINGS.register')\n")  # fmt: skip
    (pkg / "one.py").write_text("from plugpkg import THINGS\nTHINGS.register('one', 1)\n")
    (pkg / "quiet.py").write_text("raise RuntimeError('never imported: it does not register')\n")
    sub = pkg / "deep"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "two.py").write_text("from plugpkg import THINGS\nTHINGS.register('two', 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        things = importlib.import_module("plugpkg").THINGS
        assert things.get("one") == 1 and "plugpkg.one" in sys.modules
        assert "two" not in things  # not recursive
        things.recursive, things._discovered, things._pending = True, False, None
        assert things.names() == ["one", "two"] and "plugpkg.quiet" not in sys.modules
    finally:
        for m in [m for m in sys.modules if m.startswith("plugpkg")]:
            del sys.modules[m]


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registry_is_populated_and_names_resolve(kind: str) -> None:
    reg = REGISTRIES[kind]
    names = reg.names()
    assert names and len(set(names)) == len(names)
    for name in names:
        assert name in reg and reg.get(name) is reg[name]
    with pytest.raises(UnknownNameError, match=f"unknown {reg.kind} 'no-such-name'"):
        reg.get("no-such-name")


# ---------------------------------------------------------------------------------------------
# aggregators and pools


def _bag(n: int = 12, c: int = 8, grid: tuple[int, int] = (3, 5), seed: int = 0) -> Bag:
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(grid[0] * grid[1], generator=g)[:n]
    index = torch.stack([cells // grid[1], cells % grid[1]], dim=1)
    return Bag(torch.randn(n, c, generator=g), index, grid, torch.randn(n, c, 2, 2, generator=g), index * 256)


@pytest.mark.parametrize("name", AGGREGATORS.names())
def test_aggregator_contract(name: str) -> None:
    torch.manual_seed(0)
    model = AGGREGATORS.get(name)(in_dim=8, n_classes=2)
    bag = _bag()
    model.eval()
    with torch.no_grad():
        a, b = model(bag), model(bag)
    assert a.probs.shape == (2,) and a.scores.shape == (len(bag), 2)
    for t in (a.probs, a.scores):
        assert torch.isfinite(t).all() and float(t.min()) >= 0 and float(t.max()) <= 1
    assert torch.equal(a.probs, b.probs) and torch.equal(a.scores, b.scores)  # deterministic in eval mode
    params = [p for p in model.parameters() if p.requires_grad]
    if params:
        model.train()
        out = model(bag, torch.tensor([1.0, 0.0]))
        loss = torch.nn.functional.binary_cross_entropy(out.probs.clamp(1e-6, 1 - 1e-6), torch.tensor([1.0, 0.0]))
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        loss.backward()
        assert any(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("name", POOLS.names())
def test_pool_contract(name: str) -> None:
    x = torch.rand(5, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([True, False, True, True, False])
    out = create_pool(name)(x, mask=mask)
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert float(out.min()) >= float(x[mask].min()) - 1e-6 and float(out.max()) <= float(x[mask].max()) + 1e-6


# ---------------------------------------------------------------------------------------------
# encoders and segmenters


# Encoders: tests/embed/test_encoders.py runs the contract over every registered encoder.


@pytest.mark.parametrize("name", SEGMENTERS.names())
def test_segmenter_contract(name: str) -> None:
    torch.manual_seed(0)
    net = create_segmenter(name, spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8, 16))
    out = net(torch.rand(1, 1, 16, 16))
    logits = out[0] if isinstance(out, (list, tuple)) else out
    if logits.dim() == 5:  # deep supervision stacks its heads
        logits = logits[:, 0]
    assert logits.shape == (1, 3, 16, 16) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert any(p.grad is not None for p in net.parameters())


# ---------------------------------------------------------------------------------------------
# weak labels and box segmenters


def _mask() -> np.ndarray:
    yy, xx = np.mgrid[:40, :40]
    mask = np.zeros((40, 40), np.int64)
    mask[(yy - 12) ** 2 + (xx - 12) ** 2 <= 36] = 1
    mask[(yy - 27) ** 2 + (xx - 26) ** 2 <= 49] = 2
    return mask


@pytest.mark.parametrize("kind", WEAK_KINDS.names())
def test_weak_label_kind_contract(kind: str) -> None:
    mask = _mask()
    weak = make_weak_label(mask, kind, seed=3)
    assert weak.shape == mask.shape and weak.dtype == np.int64
    assert set(np.unique(weak)) <= {IGNORE, 0, 1, 2} and (weak == IGNORE).any()
    fg = weak > 0
    assert np.array_equal(weak[fg], mask[fg])  # foreground marks fall inside the mask, with its class
    assert (mask[weak == 0] == 0).all()  # background marks fall on background
    assert np.array_equal(weak, make_weak_label(mask, kind, seed=3))
    assert (make_weak_label(mask, kind, seed=3, background=False) != 0).all()


def _usable_box_segmenters() -> list[str]:
    """Every box segmenter that builds without extra files (SAM/MedSAM need a local checkpoint)."""
    out = []
    for name in BOX_SEGMENTERS.names():
        try:
            create_box_segmenter(name)
        except Exception:  # a segmenter that needs a checkpoint or an optional package
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("name", _usable_box_segmenters())
def test_box_segmenter_contract(name: str) -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.05, (40, 40)).astype(np.float32)
    img[14:26, 12:28] += 1.0
    seg = create_box_segmenter(name)
    assert isinstance(seg, PromptableSegmenter)
    prob = seg.segment(img, Box((12, 10), (28, 30)))
    assert prob.shape == img.shape and np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    assert prob[:5].max() == 0 and prob[:, :5].max() == 0  # nothing far outside the box
    assert prob[20, 20] > 0.5


# ---------------------------------------------------------------------------------------------
# attributions, AL strategies


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer4 = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x).relu().mean((2, 3))  # (B, 2)


@pytest.mark.parametrize("name", ATTRIBUTIONS.names())
def test_attribution_contract(name: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    kw = {"n_masks": 32} if name == "rise" else {}
    maps = attribute(name, _Toy(), x, **kw)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize("with_model", [False, True])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_contract(name: str, with_model: bool) -> None:
    rng = np.random.default_rng(0)
    feats = {k: rng.normal(size=(30, 5)) for k in ("contrastive", "untrained", "pixels")}
    probs = [rng.dirichlet([1, 1], size=(6, 6)).transpose(2, 0, 1) for _ in range(30)]
    predict = (lambda idx, mc: [probs[i] for i in idx]) if with_model else None
    ctx = SelectionContext(30, [1, 4, 7], feats.__getitem__, predict, seed=2, device="cpu")
    picked = STRATEGIES.get(name)(ctx, 5)
    assert len(picked) == 5 and len(set(picked)) == 5 and picked == STRATEGIES.get(name)(ctx, 5)  # seeded
    assert all(0 <= i < 30 and i not in (1, 4, 7) for i in picked)


# ---------------------------------------------------------------------------------------------
# pseudo-label methods


PSEUDO_SETTINGS = {"labels": "ct_phantom", "downsample": 2, "iterations": 3, "cam_epochs": 1, "seed": 0}
"""One pool of settings; each method takes the keys its own config class reads."""


@pytest.fixture(scope="module")
def pseudo_cases(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms import generate
    from medwss.pseudo.config import PseudoConfig
    from medwss.pseudo.workflow import load_cases

    manifest = generate("ct", tmp_path_factory.mktemp("ct"), n=2, seed=0, scale=0.3, progress=False)
    cfg = PseudoConfig.model_validate({k: v for k, v in PSEUDO_SETTINGS.items() if k in PseudoConfig.model_fields})
    cases, failed = load_cases(load_manifest(manifest), cfg)
    assert cases and not failed
    small = []
    for c in cases:  # a few slices keep every method fast
        keep = list(range(0, len(c.images), max(1, len(c.images) // 3)))[:3]
        small.append(
            replace(
                c,
                images=[c.images[i] for i in keep],
                raw=[c.raw[i] for i in keep],
                gts=None if c.gts is None else [c.gts[i] for i in keep],
                geometry=replace(c.geometry, indices=[c.geometry.indices[i] for i in keep]),
            )
        )
    return small, cfg


def _pseudo_params() -> list:  # noqa: ANN202
    """Every method; those that train a network for ``iterations`` steps (AGMM, DuPL) are marked slow."""
    from medwss.pseudo.config import TrainingSettings

    slow = pytest.mark.slow
    return [
        pytest.param(n, marks=slow) if issubclass(m.config, TrainingSettings) else n for n, m in PSEUDO_METHODS.items()
    ]


@pytest.mark.parametrize("name", _pseudo_params())
def test_pseudo_label_method_contract(name: str, pseudo_cases, tmp_path: Path) -> None:  # noqa: ANN001
    """Through the `PseudoLabelMethod` protocol: its own config, fit(cases), predict(case) -> int maps, seeded."""
    cases, cfg = pseudo_cases
    k = len(cfg.classes())
    entry = PSEUDO_METHODS.get(name)
    method = entry.create(entry.settings(PSEUDO_SETTINGS, only_read=True), MethodOptions(out_dir=tmp_path / "a"))
    assert isinstance(method, PseudoLabelMethod) and type(method.config) is entry.config
    assert method.fit(cases) is method and isinstance(method.extra, dict)
    # again from scratch (no checkpoint to resume) through run_method: the same maps for the same seed
    again, _ = run_method(name, cases, method.config, MethodOptions(out_dir=tmp_path / "b"))
    for case, again_case in zip(cases, again, strict=True):
        per_slice = method.predict(case)
        assert per_slice is not None and again_case is not None and len(per_slice) == len(case.images)
        for lab, lab2, img in zip(per_slice, again_case, case.images, strict=True):
            assert lab.shape == img.shape[-2:] and np.issubdtype(lab.dtype, np.integer)
            assert lab.min() >= IGNORE and lab.max() < k
            assert np.array_equal(lab, lab2), name


def test_pseudo_label_methods_name_their_config_class() -> None:
    from medwss.pseudo.config import PseudoConfig

    for name, method in PSEUDO_METHODS.items():
        assert method.name == name and method.help
        assert issubclass(method.config, PseudoConfig), name
        with pytest.raises(ConfigError, match="not_a_setting"):  # a key the method does not read is refused
            method.settings({"not_a_setting": 1})
    box = PSEUDO_METHODS.get("box")
    assert "cam_tau" not in box.config.model_fields and "ring" not in PSEUDO_METHODS.get("dhr").config.model_fields


# ---------------------------------------------------------------------------------------------
# phantoms, dataset builders, readers, model kinds, features: entries take their protocol's call


CALL_PROTOCOLS = {
    "phantom": PhantomGenerator,
    "dataset": DatasetBuilder,
    "model kind": BuildFn,
    "features": FeatureFn,
    "strategy": Strategy,
    "attribution": Attribution,
    "segmenter": SegmenterFactory,
}
"""Kinds whose entries are bare callables: the `typing.Protocol` naming each one's call."""


def _takes_protocol_call(fn: object, protocol: type) -> None:
    """`fn` accepts the arguments the protocol's ``__call__`` is called with (positional-only as positional)."""
    params = list(inspect.signature(protocol.__call__).parameters.values())[1:]
    args = [object() for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    kwargs = {p.name: object() for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    inspect.signature(fn).bind(*args, **kwargs)


@pytest.mark.parametrize("kind", sorted(CALL_PROTOCOLS))
def test_entries_take_their_protocols_call(kind: str) -> None:
    for name, entry in REGISTRIES[kind].items():
        assert callable(entry), name
        try:
            _takes_protocol_call(entry, CALL_PROTOCOLS[kind])
        except TypeError as exc:
            raise AssertionError(
                f"{kind} {name!r} does not take {CALL_PROTOCOLS[kind].__name__}'s call: {exc}"
            ) from exc
    with pytest.raises(TypeError):  # the check bites
        _takes_protocol_call(lambda: None, CALL_PROTOCOLS[kind])


def test_readme_reader_and_weak_kind_are_picked_up_by_the_contract_tests(tmp_path: Path) -> None:
    """README "Extending medwss": a volume reader and a weak-label kind are one registration each, and pass."""
    from medwss.data.weak import register_weak_kind
    from medwss.io.volume import Volume
    from medwss.io.volumes import load_volume, register_volume_reader

    @register_volume_reader("npy", accepts=lambda p: p.name.endswith(".npy"))
    def read_npy(path: Path, series: str | None = None) -> Volume:
        return Volume(np.load(path), np.eye(4), {"reader": "numpy"}, str(path))

    @register_weak_kind("cross")
    def _cross(comp: np.ndarray, rng: np.random.Generator, opts: dict) -> np.ndarray:
        out = np.zeros_like(comp)
        i, j = (int(v) for v in np.argwhere(comp).mean(0))
        out[i, :], out[:, j] = True, True
        return out & comp

    try:
        np.save(tmp_path / "v.npy", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
        assert "npy" in VOLUME_READERS.names() and load_volume(tmp_path / "v.npy").metadata["reader"] == "numpy"
        assert "cross" in WEAK_KINDS.names()
        test_weak_label_kind_contract("cross")
    finally:
        VOLUME_READERS.unregister("npy")
        WEAK_KINDS.unregister("cross")


def test_volume_readers_accept_the_formats_they_read(tmp_path: Path) -> None:
    from medwss.io.volumes import load_volume, save_nifti

    path = save_nifti(np.zeros((4, 5, 6), np.float32), tmp_path / "v.nii.gz", np.eye(4))
    chosen = [r.name for r in VOLUME_READERS.values() if r.accepts(Path(path))]
    assert chosen[:1] == ["nifti"] and load_volume(path).array.shape == (4, 5, 6)
