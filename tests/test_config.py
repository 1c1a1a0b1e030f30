"""Typed configs and run records."""

from __future__ import annotations

import json

import pytest

from medwss.cli.phantom import PhantomConfig
from medwss.config import load_config
from medwss.errors import ConfigError
from medwss.runinfo import write_run_record


def test_shipped_phantom_configs_validate():
    from tests.conftest import ROOT

    for kind in ("wsi", "ct", "mri"):
        cfg = load_config(ROOT / "configs" / f"phantom_{kind}.yaml", PhantomConfig)
        assert cfg.kind == kind and cfg.n >= 1


def test_unknown_key_and_bad_value_name_file_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kind: ct\nn: 0\ncolour: red\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, PhantomConfig)
    msg = str(err.value)
    assert "c.yaml" in msg and "colour" in msg and "n:" in msg


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kind: [ct\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f, PhantomConfig)


def test_run_record(tmp_path):
    path = write_run_record(tmp_path, "phantom ct", {"n": 2}, seed=3, metrics={"x": 1.0})
    rec = json.loads(path.read_text())
    assert rec["seed"] == 3 and rec["config"] == {"n": 2} and rec["metrics"] == {"x": 1.0}
    assert rec["versions"]["medwss"] and rec["versions"]["numpy"]


def shipped_config_models() -> dict[str, type | None]:
    """Every file of configs/ → the class it must validate against (None: pseudo-label configs, validated by
    tests/cli/test_pseudo_cli.py::test_shipped_configs_validate against their method's class)."""
    from medwss.active.simulate import SimulateConfig
    from medwss.active.state import ALConfig
    from medwss.cli.phantom import PhantomConfig
    from medwss.counterfactual.config import ClassifierFile, CoinFile
    from medwss.data.phantoms.bags import BagPhantomConfig
    from medwss.embed.config import EmbedConfig, TileConfig
    from medwss.embed.pretrain.config import PretrainConfig
    from medwss.eval.runner import EvaluateConfig
    from medwss.mil.config import MILApplyConfig, MILTrainConfig
    from medwss.scribble.config import ScribbleConfig
    from tests.conftest import ROOT

    exact = {
        "tile.yaml": TileConfig,
        "embed.yaml": EmbedConfig,
        "pretrain.yaml": PretrainConfig,
        "evaluate.yaml": EvaluateConfig,
        "al.yaml": ALConfig,
        "mil_apply.yaml": MILApplyConfig,
        "phantom_bags.yaml": BagPhantomConfig,
        "coin.yaml": CoinFile,
        "coin_lgg.yaml": CoinFile,
    }
    prefixes = (
        ("coin_", ClassifierFile),  # coin_classifier.yaml, coin_lgg_classifier.yaml
        ("al_", SimulateConfig),
        ("mil_", MILTrainConfig),
        ("phantom_", PhantomConfig),
        ("scribble_", ScribbleConfig),
        ("pseudo_", None),
    )
    models: dict[str, type | None] = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        model = exact.get(path.name, next((m for pre, m in prefixes if path.name.startswith(pre)), KeyError))
        if model is KeyError:
            raise AssertionError(
                f"configs/{path.name}: no config class is known for it; add it to shipped_config_models"
            )
        models[path.name] = model
    return models


def test_every_shipped_config_validates():
    from medwss.embed.config import TileConfig
    from tests.conftest import ROOT

    models = shipped_config_models()
    assert len(models) >= 50 and "al_acdc.yaml" in models and "pseudo_kvasir_box.yaml" in models
    for name, model in models.items():
        if model is not None:
            load_config(ROOT / "configs" / name, model)
    assert load_config(ROOT / "configs" / "tile.yaml", TileConfig).roi_labels is None


# --- hostile YAML -------------------------------------------------------------------------------


def test_yaml_alias_bomb_refused_fast(tmp_path):
    import time

    from medwss.cli.tile import TileConfig

    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    assert f.stat().st_size < 1000  # 9^9 strings if expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(f, TileConfig)
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    assert "\n" not in msg and "bomb.yaml" in msg and "aliases (*a) are not allowed" in msg and "line 2" in msg


def test_anchor_without_alias_passes(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kind: &k ct\nn: 2\n")
    assert load_config(f, PhantomConfig).kind == "ct"


def test_oversized_binary_and_folder_configs_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("kind: ct\n" + "# pad\n" * 200)
    monkeypatch.setenv("MEDWSS_MAX_CONFIG_BYTES", "100")
    with pytest.raises(ConfigError, match=r"big.yaml: config is 1,209 bytes, over the 100-byte limit"):
        load_config(big, PhantomConfig)
    monkeypatch.delenv("MEDWSS_MAX_CONFIG_BYTES")
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\x80\x81\xfe\xff" * 8)
    with pytest.raises(ConfigError, match="model.pt: not a text"):
        load_config(binary, PhantomConfig)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path, PhantomConfig)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml"):
        load_config(deep, PhantomConfig)
