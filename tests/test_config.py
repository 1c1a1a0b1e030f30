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


def test_every_shipped_config_validates():
    from medwss.cli.tile import TileConfig
    from medwss.embed.engine import EmbedConfig
    from medwss.embed.pretrain import PretrainConfig
    from tests.conftest import ROOT

    models = {"tile.yaml": TileConfig, "embed.yaml": EmbedConfig, "pretrain.yaml": PretrainConfig}
    for name, model in models.items():
        load_config(ROOT / "configs" / name, model)
    assert load_config(ROOT / "configs" / "tile.yaml", TileConfig).roi_labels is None
