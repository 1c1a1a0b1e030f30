"""Model files, checkpoints and aggregator options refused in one short line naming the file."""

from __future__ import annotations

import pickle

import pytest
import torch

from medwss.errors import ConfigError, CorruptFileError


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("ran",))


def _files(tmp_path):  # noqa: ANN001, ANN202
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps(_Payload(), protocol=4))
    torch.save({"x": _Payload()}, tmp_path / "torch_pickle.pt")
    torch.save({"x": torch.zeros(2)}, tmp_path / "ok.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:120])
    return {
        "empty.pt": "empty file",
        "pickle.pt": "pickle payload or foreign bytes refused (weights_only)",
        "torch_pickle.pt": "pickle payload refused (weights_only): it asks for print",
        "trunc.pt": "truncated or not a torch file",
    }


def test_model_and_checkpoint_refusals_are_one_short_line(tmp_path, capsys):
    from medwss.train.checkpoint import load_checkpoint
    from medwss.train.model_file import read_model

    for name, reason in _files(tmp_path).items():
        p = tmp_path / name
        with pytest.raises(CorruptFileError) as err:
            read_model(p)
        msg = str(err.value)
        assert msg == f"{p}: not a medwss model file ({reason})"
        with pytest.raises(ConfigError) as err2:
            load_checkpoint(p)
        assert str(p) in str(err2.value) and reason in str(err2.value) and "\n" not in str(err2.value)
    assert "ran" not in capsys.readouterr().out  # no payload ran
    assert not capsys.readouterr().err  # torch's warnings kept off stderr


def test_predict_with_a_pickle_model_exits_2_in_one_line(tmp_path, capsys):
    from medwss.cli.main import main

    _files(tmp_path)
    (tmp_path / "in").mkdir()
    argv = [
        "pseudo",
        "predict",
        "--model",
        str(tmp_path / "pickle.pt"),
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle.pt" in err[0] and "pickle payload" in err[0] and len(err[0]) < 200


def test_damaged_engine_checkpoint_is_refused_naming_it(tmp_path):
    from medwss.train import EngineConfig
    from medwss.train.checkpoint import load_checkpoint, save_checkpoint
    from tests.train.helpers import run

    cfg = EngineConfig(epochs=2, progress=False)
    run(tmp_path, cfg)
    blob = load_checkpoint(tmp_path / "checkpoint.pt")
    blob["models"] = {}
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in blob.items() if k not in ("format", "version")})
    with pytest.raises(ConfigError, match="does not fit the run") as err:
        run(tmp_path, cfg)
    assert "checkpoint.pt" in str(err.value) and "\n" not in str(err.value)


def test_unknown_aggregator_option_names_the_config_file(tmp_path):
    from medwss.config import load_config
    from medwss.mil.train import MILTrainConfig

    cfg = tmp_path / "mil.yaml"
    cfg.write_text("aggregator: abmil\naggregator_kwargs: {bogus: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, MILTrainConfig)
    assert str(cfg) in str(err.value) and "abmil takes no option bogus" in str(err.value)
