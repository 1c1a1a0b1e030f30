"""Flags generated from pydantic configs (`medwss.cli.options`) and the one merge: defaults < YAML < flags."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from medwss.cli.options import add_config_flags, check_every_field_has_a_flag, config_from_args
from medwss.config import StrictConfig
from medwss.errors import ConfigError


class Inner(StrictConfig):
    """A nested section."""

    depth: int = 2
    """How deep."""


class Toy(StrictConfig):
    """A config with one field of each kind."""

    n: int = Field(4, ge=1)
    """Number of things."""
    rate: float = 0.5
    """A rate of 50%."""
    loud: bool = False
    """Shout."""
    mode: Literal["fast", "slow"] = "fast"
    """How to go."""
    labels: list[int] = Field(default_factory=lambda: [1, 2])
    """Label values."""
    limit: int | None = 10
    """Most things; none: no limit."""
    where: Path = Path("out")
    """A folder."""
    pair: tuple[int, int] = (3, 5)
    """Low and high."""
    extra: dict[str, int] = Field(default_factory=dict)
    """Options."""
    inner: Inner = Inner()
    """A section."""
    hidden: Inner = Inner()
    """A YAML-only section."""


def _parser(**kw: object) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_flags(p, Toy, flatten={"inner": "inner-"}, **kw)  # type: ignore[arg-type]
    return p


def _options(help_text: str) -> list[str]:
    """The option strings that start a line of the help's option list."""
    return [line.split()[0].rstrip(",") for line in help_text.splitlines() if line.startswith("  -")]


def test_flags_types_choices_and_defaults_in_help():
    p = _parser(aliases={"labels": "--label"})
    text = p.format_help()
    for flag in ("--n", "--rate", "--loud", "--mode", "--labels", "--limit", "--where", "--pair", "--extra"):
        assert _options(text).count(flag) == 1, flag
    assert "--inner-depth" in text and "--hidden" not in text and "YAML only" in text and "hidden" in text
    assert "--loud, --no-loud" in text and "{fast,slow}" in text and "--label" in text
    assert "Number of things. (default: 4)" in text and "A rate of 50%. (default: 0.5)" in text
    assert "(default: --no-loud)" in text and "(default: 1,2)" in text and "(default: 3 5)" in text
    args = p.parse_args(
        ["--n", "7", "--loud", "--mode", "slow", "--labels", "4", "5", "--label", "6,7", "--limit", "none",
         "--where", "x/y", "--pair", "1", "2", "--extra", "{a: 1}", "--inner-depth", "9"]
    )  # fmt: skip
    cfg = config_from_args(Toy, args)
    assert (cfg.n, cfg.rate, cfg.loud, cfg.mode, cfg.labels) == (7, 0.5, True, "slow", [4, 5, 6, 7])
    assert cfg.limit is None and cfg.where == Path("x/y") and cfg.pair == (1, 2) and cfg.extra == {"a": 1}
    assert cfg.inner.depth == 9 and cfg.hidden.depth == 2
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "medium"])  # argparse's choices


def test_merge_order_defaults_yaml_flags(tmp_path):
    f = tmp_path / "toy.yaml"
    f.write_text("n: 5\nrate: 0.25\nlimit: 3\ninner: {depth: 4}\nhidden: {depth: 6}\n")
    p = _parser()
    cfg = config_from_args(Toy, p.parse_args([]), f)
    assert (cfg.n, cfg.rate, cfg.limit, cfg.inner.depth, cfg.hidden.depth, cfg.mode) == (5, 0.25, 3, 4, 6, "fast")
    cfg = config_from_args(Toy, p.parse_args(["--n", "8", "--limit", "none"]), f)  # given flags win, others stay
    assert (cfg.n, cfg.rate, cfg.limit, cfg.inner.depth) == (8, 0.25, None, 4)
    assert config_from_args(Toy, p.parse_args([])) == Toy()
    # a hand-built namespace: None means "not given"
    assert config_from_args(Toy, argparse.Namespace(n=None, rate=0.75), f).n == 5


def test_bad_flag_and_bad_yaml_key_are_one_line(tmp_path):
    p = _parser()
    with pytest.raises(ConfigError) as e:
        config_from_args(Toy, p.parse_args(["--n", "abc"]))
    msg = str(e.value)
    assert msg.startswith("--n: ") and "integer" in msg and "'abc'" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"^--inner-depth: .*got '0\.5'"):
        config_from_args(Toy, p.parse_args(["--inner-depth", "0.5"]))
    f = tmp_path / "toy.yaml"
    f.write_text("n: 0\ncolour: red\ninner: {deep: 1}\n")
    with pytest.raises(ConfigError) as e:
        config_from_args(Toy, p.parse_args([]), f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: ") and "n: " in msg and "\n" not in msg
    assert msg.endswith("keys this command does not read: inner.deep, colour")
    f.write_text("".join(f"k{i}: 1\n" for i in range(10)))  # a file written for another command
    with pytest.raises(ConfigError, match=r"k0, k1, .*k7 and 2 more \(is this the config of another command\?\)$"):
        config_from_args(Toy, p.parse_args([]), f)


def _migrated() -> dict[tuple[str, ...], tuple[type[BaseModel], tuple[str, ...]]]:
    """(sub)command → (its config class, fields given otherwise: positional inputs, job flags)."""
    from medwss.active.simulate import SimulateConfig
    from medwss.active.state import ALConfig
    from medwss.cli.phantom import PhantomConfig
    from medwss.counterfactual.config import BaselinesConfig, ClassifierFile, CoinFile, SegmentConfig
    from medwss.data.phantoms.bags import BagPhantomConfig
    from medwss.embed.config import EmbedConfig, TileConfig
    from medwss.embed.pretrain import PretrainConfig
    from medwss.eval.runner import EvaluateConfig
    from medwss.mil.config import MILApplyConfig, MILTrainConfig
    from medwss.scribble.config import ScribbleMakeConfig, ScribblePredictConfig, ScribbleTrainJob, ShiftConfig

    return {
        ("evaluate",): (EvaluateConfig, ()),
        ("phantom",): (PhantomConfig, ("kind",)),
        ("phantom", "bags"): (BagPhantomConfig, ()),
        ("encoder", "pretrain"): (PretrainConfig, ("out",)),
        ("al", "init"): (ALConfig, ()),
        ("al", "simulate"): (SimulateConfig, ()),
        ("coin", "train-classifier"): (ClassifierFile, ()),
        ("coin", "train"): (CoinFile, ()),
        ("coin", "segment"): (SegmentConfig, ()),
        ("coin", "baselines"): (BaselinesConfig, ()),
        ("tile",): (TileConfig, ()),
        ("embed",): (EmbedConfig, ("encoder_options",)),  # YAML, and --encoder-option KEY=VALUE
        ("mil", "train"): (MILTrainConfig, ()),
        ("mil", "predict"): (MILApplyConfig, ("threshold",)),  # heatmap's
        ("mil", "heatmap"): (MILApplyConfig, ()),
        ("scribble", "make"): (ScribbleMakeConfig, ("options",)),  # YAML, and --option KEY=VALUE
        ("scribble", "train"): (ScribbleTrainJob, ()),
        ("scribble", "predict"): (ScribblePredictConfig, ()),
        ("scribble", "shift"): (ShiftConfig, ("settings",)),  # YAML, and --setting NAME=CONFIG.yaml
    }


@functools.lru_cache(maxsize=1)
def _root() -> argparse.ArgumentParser:
    from medwss.cli.main import build_parser

    return build_parser()


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = _root()
    for name in path:
        if name == "bags":  # a positional kind, not a subcommand
            break
        (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_every_config_field_of_the_migrated_commands_has_one_flag():
    from medwss.cli.options import FLAGS_KEY, leaf_paths

    for path, (model, skip) in _migrated().items():
        parser = _subparser(path)
        assert check_every_field_has_a_flag(model, parser, skip) == [], path
        flags = parser.get_default(FLAGS_KEY)
        options = _options(parser.format_help())
        for field in leaf_paths(model):
            dest = field.replace(".", "__")
            if dest in flags:
                assert options.count(flags[dest]) == 1, (path, field)


def test_old_flag_names_still_work():
    parser = _root()
    a = parser.parse_args(["encoder", "pretrain", "m.csv", "--tiles", "t", "--out", "w.pt", "--split", "train",
                           "--workers", "2"])  # fmt: skip
    assert (a.splits, a.num_workers) == (["train"], "2")
    a = parser.parse_args(["al", "simulate", "m.csv", "--out", "o", "--mode", "full", "--mode", "scribble",
                           "--strategies", "random,margin", "--seeds", "0,1"])  # fmt: skip
    assert (a.modes, a.strategies, a.seeds) == (["full", "scribble"], ["random", "margin"], ["0", "1"])
    a = parser.parse_args(["coin", "segment", "m.csv", "--classifier", "c", "--generator", "g", "-o", "o",
                           "--format", "nifti", "--format", "slicer", "--sites", "DU,HT"])  # fmt: skip
    assert (a.formats, a.sites) == (["nifti", "slicer"], ["DU", "HT"])
    a = parser.parse_args(["tile", "m.csv", "--out", "o", "--tile-size", "64", "--mag", "20", "--roi-labels", "2,3",
                           "--channel", "DAPI", "--channel", "CD8", "--force-mpp", "--stain-norm", "macenko"])  # fmt: skip
    assert (a.tile_size, a.mag, a.roi_labels, a.channels, a.force_mpp) == (
        "64",
        "20",
        ["2", "3"],
        ["DAPI", "CD8"],
        True,
    )
    a = parser.parse_args(["embed", "m.csv", "--tiles", "t", "--out", "o", "--tokens", "--batch-size", "8",
                           "--encoder-option", "input_size=224", "--dtype", "float32"])  # fmt: skip
    assert (a.tokens, a.batch_size, a.encoder_option, a.dtype) == (True, "8", ["input_size=224"], "float32")
    a = parser.parse_args(["mil", "train", "m.csv", "--out", "o", "--aggregator", "abmil", "--max-instances", "9",
                           "--monitor", "val_auc", "--folds", "3"])  # fmt: skip
    assert (a.aggregator, a.max_instances, a.monitor, a.folds) == ("abmil", "9", "val_auc", "3")
    a = parser.parse_args(["mil", "heatmap", "-i", "d", "-o", "o", "--model", "m.pt", "--threshold", "0.7",
                           "--nan", "keep", "--mode", "patch3d", "--tile-size", "16"])  # fmt: skip
    assert (a.threshold, a.nan, a.mode, a.tile_size) == ("0.7", "keep", "patch3d", "16")
    a = parser.parse_args(["scribble", "make", "m.csv", "--out", "o", "--kind", "point", "--no-background",
                           "--option", "radius=3"])  # fmt: skip
    assert (a.kind, a.background, a.option) == ("point", False, ["radius=3"])
    a = parser.parse_args(["scribble", "train", "m.csv", "--out", "o", "--spatial-dims", "3", "--weak-kind", "box",
                           "--ensemble", "2", "--sites", "A,B", "--size-warmup", "2"])  # fmt: skip
    assert (a.spatial_dims, a.weak_kind, a.ensemble, a.sites, a.size_warmup) == (3, "box", "2", ["A", "B"], "2")
    a = parser.parse_args(["scribble", "predict", "m.csv", "-o", "o", "--model", "a.pt", "--format", "nifti",
                           "--format", "slicer", "--split", "test", "--overlap", "0.5"])  # fmt: skip
    assert (a.formats, a.split, a.overlap) == (["nifti", "slicer"], "test", "0.5")
    a = parser.parse_args(["scribble", "shift", "m.csv", "--out", "o", "--train-sites", "A,B", "--setting",
                           "x=c.yaml", "--ensemble", "2", "--epochs", "1"])  # fmt: skip
    assert (a.train_sites, a.setting, a.ensemble, a.epochs) == (["A", "B"], ["x=c.yaml"], "2", "1")


def test_yaml_sets_what_only_flags_set_before(tmp_path):
    """Every setting of scribble predict/make/shift and mil predict/heatmap is a YAML key too."""
    from medwss.cli.options import config_from_args
    from medwss.mil.config import MILApplyConfig
    from medwss.scribble.config import ScribblePredictConfig, ShiftConfig

    f = tmp_path / "c.yaml"
    f.write_text("threshold: 0.8\nnan: keep\n")
    args = _root().parse_args(["mil", "heatmap", "d.csv", "-o", "o", "--model", "m.pt", "--nan", "raise"])
    cfg = config_from_args(MILApplyConfig, args, f)
    assert (cfg.threshold, cfg.nan) == (0.8, "raise")
    f.write_text("formats: [nifti, dicom-seg]\nsites: [A]\n")
    args = _root().parse_args(["scribble", "predict", "m.csv", "-o", "o", "--model", "a.pt", "--split", "val"])
    cfg2 = config_from_args(ScribblePredictConfig, args, f)
    assert (cfg2.formats, cfg2.sites, cfg2.split) == (["nifti", "dicom-seg"], ["A"], "val")
    f.write_text("train_sites: [A]\nsettings: {a: x.yaml}\n")
    args = _root().parse_args(["scribble", "shift", "m.csv", "--out", "o"])
    cfg3 = config_from_args(ShiftConfig, args, f, extra={"settings.b": "y.yaml"})
    assert (cfg3.train_sites, cfg3.settings, cfg3.ensemble) == (["A"], {"a": "x.yaml", "b": "y.yaml"}, 3)


def test_building_the_parser_of_these_commands_imports_no_torch_or_numpy():
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from medwss.cli import embed, mil, scribble, tile\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "for m in (tile, embed, mil, scribble): m.register(sub)\n"
        "print(sorted(h for h in ('torch', 'monai', 'numpy', 'scipy', 'h5py') if h in sys.modules))\n"
        "from medwss.cli.main import COMMANDS, build_parser\n"
        "for name in COMMANDS:\n"
        "    if name != 'al':  # ALConfig nests the metric config, whose module imports torch\n"
        "        build_parser([name, '--help'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "False"]


def test_a_command_line_builds_only_its_commands_parser():
    import argparse

    from medwss.cli.main import COMMANDS, build_parser

    def choices(parser: argparse.ArgumentParser) -> list[str]:
        return next(list(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    assert choices(build_parser()) == list(COMMANDS)  # the table lists every command, in help order
    assert choices(build_parser(["--debug", "tile", "--help"])) == ["tile"]
    assert choices(build_parser(["tiles"])) == list(COMMANDS)  # a typo: argparse lists the commands
