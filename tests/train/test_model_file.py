"""The one model file: round trip, dispatch on kind, older formats converted or named, pickles refused."""

from __future__ import annotations

import pytest
import torch

from medwss.errors import CorruptFileError, UnsupportedFormatError
from medwss.mil.registry import create_aggregator
from medwss.mil.train import load_model as load_mil
from medwss.mil.train import save_model as save_mil
from medwss.train import load_model, read_model, register_model_kind, save_model

META = {
    "aggregator": "abmil",
    "aggregator_kwargs": {},
    "in_dim": 6,
    "n_classes": 1,
    "encoder": "stats",
    "config": {"lr": 1e-3},
}


def equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mil_model_file_round_trip(tmp_path):
    model = create_aggregator("abmil", 6, 1)
    save_mil(tmp_path / "m.pt", model, META)
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(blob) == {"format", "version", "kind", "config", "state_dict", "meta"} and blob["kind"] == "mil"
    loaded, record = load_model(tmp_path / "m.pt")
    assert equal(model, loaded) and not loaded.training and record.legacy is None
    assert record.config == {"aggregator": "abmil", "aggregator_kwargs": {}, "in_dim": 6, "n_classes": 1}
    assert record.meta["encoder"] == "stats" and record.meta["train_config"] == {"lr": 1e-3}
    again, meta = load_mil(tmp_path / "m.pt")
    assert equal(model, again) and meta["n_classes"] == 1


def test_older_mil_files_still_load(tmp_path):
    model = create_aggregator("abmil", 6, 1)
    torch.save({"state_dict": model.state_dict(), "meta": META}, tmp_path / "old.pt")  # the format before
    loaded, record = load_model(tmp_path / "old.pt")
    assert (
        equal(model, loaded) and record.kind == "mil" and record.legacy and record.meta["train_config"] == {"lr": 1e-3}
    )
    assert load_mil(tmp_path / "old.pt")[1]["aggregator"] == "abmil"


class Payload:
    pass


def test_pickles_and_foreign_files_are_refused_in_one_line(tmp_path):
    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "pickle.pt")
    (tmp_path / "text.pt").write_text("hello")
    for name in ("pickle.pt", "text.pt"):
        with pytest.raises(CorruptFileError) as err:
            load_model(tmp_path / name)
        msg = str(err.value)
        assert name in msg and "\n" not in msg and ("weights_only" in msg or "not a torch file" in msg)


@pytest.mark.parametrize(
    ("blob", "names"),
    [
        ({"w": torch.zeros(1)}, "bare state dict"),
        ({"state_dict": {}, "config": {}, "meta": {}}, "load_segmenter"),
        ({"state_dict": {}, "config": {}, "spec": {}}, "load_classifier"),
        ({"state_dict": {}, "settings": {}, "config": {}}, "load_generator"),
        ({"format": "medwss-train-checkpoint"}, "training checkpoint"),
        ({"something": 1}, "not a medwss model file"),
        ([1, 2], "not a medwss model file"),
    ],
)
def test_older_formats_are_named(tmp_path, blob, names):
    torch.save(blob, tmp_path / "f.pt")
    with pytest.raises(UnsupportedFormatError, match=names) as err:
        load_model(tmp_path / "f.pt")
    assert "f.pt" in str(err.value) and "\n" not in str(err.value)


def test_dispatch_on_kind_and_unknown_kinds(tmp_path):
    register_model_kind("test_linear", lambda cfg: torch.nn.Linear(cfg["i"], cfg["o"]))
    lin = torch.nn.Linear(3, 2)
    save_model(tmp_path / "l.pt", "test_linear", lin, {"i": 3, "o": 2}, {"note": "x"})
    loaded, record = load_model(tmp_path / "l.pt")
    assert isinstance(loaded, torch.nn.Linear) and equal(lin, loaded) and record.meta == {"note": "x"}
    save_model(tmp_path / "u.pt", "nobody", lin, {})
    assert read_model(tmp_path / "u.pt").kind == "nobody"
    with pytest.raises(UnsupportedFormatError, match="nobody"):
        load_model(tmp_path / "u.pt")
    save_model(tmp_path / "bad.pt", "test_linear", lin, {"i": 4, "o": 2})
    with pytest.raises(CorruptFileError, match="does not rebuild"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(UnsupportedFormatError, match="not a 'mil' one"):
        load_mil(tmp_path / "l.pt")


def test_encoder_model_file_loads_both_ways(tmp_path):
    from medwss.embed.encoders import create_encoder
    from medwss.embed.pretrain import save_encoder

    enc = create_encoder("resnet18", widen_factor=0.125)
    checksum = save_encoder(enc, tmp_path / "e.pt")
    via_weights = create_encoder("resnet18", weights=tmp_path / "e.pt", widen_factor=0.125)
    via_file, record = load_model(tmp_path / "e.pt")
    assert via_weights.weights_checksum == checksum and record.kind == "encoder"
    assert equal(enc, via_weights) and equal(enc, via_file)
