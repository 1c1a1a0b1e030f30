"""Contract tests over every registered encoder (timm's tests/test_models.py, on tiny synthetic input)."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch
from torch import nn

from medwss.embed.encoders import create_encoder, encoder_entry, list_encoders, load_weights
from medwss.embed.encoders.vit_timm import FOUNDATION_PRESETS
from medwss.errors import ConfigError

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}  # foundation-model layouts, shrunk for the contract tests

CASES = [(name, sd) for name in list_encoders() for sd in encoder_entry(name).spatial_dims]
IDS = [f"{name}-{sd}d" for name, sd in CASES]
NAMES = list_encoders()  # the state dict does not depend on spatial_dims: one round trip per encoder


def tiny_input(spatial_dims: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, 64, 64) if spatial_dims == 2 else (2, 1, 32, 32, 32)
    return torch.rand(shape, generator=g)


def make(name: str, spatial_dims: int, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    if name in FOUNDATION_PRESETS or name == "vit-timm":
        kwargs = {**TINY_VIT, **kwargs}
    return create_encoder(name, spatial_dims=spatial_dims, in_channels=3 if spatial_dims == 2 else 1, **kwargs)


@pytest.mark.parametrize(("name", "spatial_dims"), CASES, ids=IDS)
def test_forward_contract(name, spatial_dims):
    enc = make(name, spatial_dims)
    x = tiny_input(spatial_dims)
    with torch.no_grad():
        tokens = enc.forward_features(x)
        pooled = enc.forward_head(tokens)
        out = enc(x)
    assert enc.name == name and enc.spatial_dims == spatial_dims and enc.weights_checksum is None
    assert tokens.ndim == spatial_dims + 2 and tokens.shape[:2] == (2, enc.embed_dim)
    assert out.shape == (2, enc.embed_dim) and torch.isfinite(out).all()
    assert torch.allclose(pooled, out) and torch.allclose(enc.forward_head(tokens, pre_logits=False), out)


@pytest.mark.parametrize(("name", "spatial_dims"), CASES, ids=IDS)
def test_backward_reaches_every_parameter(name, spatial_dims):
    enc = make(name, spatial_dims).train()
    params = dict(enc.named_parameters())
    if not encoder_entry(name).parametric:
        assert not params
        return
    enc(tiny_input(spatial_dims)).square().mean().backward()
    missing = [k for k, p in params.items() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name, tmp_path):
    spatial_dims = encoder_entry(name).spatial_dims[0]
    if not encoder_entry(name).parametric:
        with pytest.raises(ConfigError, match="no weights"):
            make(name, spatial_dims, weights=tmp_path / "none.pt")
        return
    enc = make(name, spatial_dims)
    path = tmp_path / "w.pt"
    torch.save(enc.state_dict(), path)
    torch.manual_seed(123)  # a different random initialisation
    tiny = TINY_VIT if name in FOUNDATION_PRESETS or name == "vit-timm" else {}
    fresh = create_encoder(name, spatial_dims=spatial_dims, in_channels=enc.in_channels, weights=path, **tiny)
    x = tiny_input(spatial_dims, seed=1)
    with torch.no_grad():
        assert torch.equal(fresh(x), enc.eval()(x))
    assert fresh.weights_checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_stats_is_fast_and_describes_the_tile():
    enc = create_encoder("stats")
    dark, bright = torch.full((1, 3, 32, 32), 0.1), torch.full((1, 3, 32, 32), 0.9)
    f = enc(torch.cat([dark, bright]))
    names = enc.feature_names
    mean = [i for i, n in enumerate(names) if n.endswith("_mean") and not n.endswith("grad_mean")]
    assert torch.allclose(f[:, mean], torch.tensor([[0.1] * 3, [0.9] * 3]), atol=1e-6)
    hist = [i for i, n in enumerate(names) if n.startswith("c0_hist")]
    assert torch.allclose(f[:, hist].sum(1), torch.ones(2))  # a histogram of fractions
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2
    textured = checker.float().expand(1, 3, 32, 32)
    contrast = names.index("c0_contrast1")
    assert enc(textured)[0, contrast] > 0.9 and f[0, contrast] == 0


# Weights files.


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)


def test_load_weights_nested_and_prefixed(tmp_path):
    src = Toy()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.encoder.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = Toy()
    missing, unexpected, checksum = load_weights(dst, path)
    assert (missing, unexpected) == ([], [])
    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(dst.conv.weight, src.conv.weight)


def test_load_weights_reports_extra_and_missing(tmp_path, caplog):
    state = Toy().state_dict()
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(2)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with caplog.at_level(logging.WARNING):
        missing, unexpected, _ = load_weights(Toy(), path)
    assert missing == ["fc.bias"] and unexpected == ["head.weight"]
    assert "fc.bias" in caplog.text and "head.weight" in caplog.text


def test_load_weights_errors(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"a.weight": torch.zeros(1), "b.bias": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="none of the 2 weights") as err:
        load_weights(Toy(), path)
    assert str(path) in str(err.value)
    shapes = tmp_path / "shapes.pt"
    torch.save({"conv.weight": torch.zeros(1, 1, 1, 1)}, shapes)
    with pytest.raises(ConfigError, match="wrong shape"):
        load_weights(Toy(), shapes)


class Payload:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "extra": Payload()}, path)
    with pytest.raises(ConfigError, match="weights_only"):
        load_weights(Toy(), path)


def test_bare_monai_state_dict_loads_into_the_wrapper(tmp_path):
    enc = make("resnet18", 2, widen_factor=0.25)
    path = tmp_path / "bare.pt"
    torch.save(enc.backbone.state_dict(), path)  # keys without the ``backbone.`` prefix
    fresh = create_encoder("resnet18", widen_factor=0.25, weights=path)
    assert torch.equal(fresh.backbone.conv1.weight, enc.backbone.conv1.weight)


# Registry and TorchScript.


def test_unknown_encoder_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown encoder 'resnet9'") as err:
        create_encoder("resnet9")
    for name in list_encoders():
        assert name in str(err.value)


def test_bad_options_and_dims():
    with pytest.raises(ConfigError, match="bad options"):
        create_encoder("resnet18", not_an_option=1)
    with pytest.raises(ConfigError, match="spatial_dims"):
        create_encoder("stats", spatial_dims=1)
    with pytest.raises(ValueError, match="C=3"):
        create_encoder("stats")(torch.rand(1, 1, 8, 8))


class Pooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))  # (B, 6)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_encoders(tmp_path):
    x = tiny_input(2)
    mapped = tmp_path / "map.pt"
    torch.jit.save(torch.jit.trace(nn.Conv2d(3, 5, 4, stride=4).eval(), x), mapped)
    enc = create_encoder(f"torchscript:{mapped}")
    assert enc.embed_dim == 5 and enc.forward_features(x).shape == (2, 5, 16, 16)
    assert enc.weights_checksum == hashlib.sha256(mapped.read_bytes()).hexdigest()
    pooled = tmp_path / "pooled.pt"
    module = Pooled().eval()
    torch.jit.save(torch.jit.script(module), pooled)
    enc = create_encoder(f"torchscript:{pooled}", embed_dim=6)
    assert enc.forward_features(x).shape == (2, 6, 1, 1)
    with torch.no_grad():
        assert torch.allclose(enc(x), module(x), atol=1e-6)  # mean 0, std 1 by default: the module sees x
    with pytest.raises(ConfigError, match="TorchScript"):
        create_encoder(f"torchscript:{pooled}", weights=pooled)


def test_vit_with_monai_blocks_runs_and_round_trips(tmp_path):
    """``block="monai"``: MONAI's own TransformerBlock (needs einops); same token map, its own keys."""
    pytest.importorskip("einops")
    enc = create_encoder("vit", spatial_dims=2, in_channels=3, block="monai", img_size=32, patch_size=8,
                         hidden_size=16, num_layers=1, num_heads=2)  # fmt: skip
    x = tiny_input(2)[:, :, :32, :32]
    with torch.no_grad():
        tokens = enc.forward_features(x)
    assert tokens.shape == (2, 16, 4, 4) and torch.isfinite(tokens).all()
    assert any(k.startswith("blocks.0.attn.qkv") for k in enc.state_dict())  # MONAI's layout, not torch's
    with pytest.raises(ConfigError, match="unknown block"):
        create_encoder("vit", spatial_dims=2, in_channels=3, block="flax")
