"""Foundation-model ViT layouts: tiny random configs saved in each layout load strict, give the documented width."""

from __future__ import annotations

import pytest
import torch

from medwss.embed.encoders import create_encoder
from medwss.embed.encoders.vit_timm import FOUNDATION_PRESETS, TimmViT, resample_pos_embed
from medwss.errors import ConfigError

torch.set_num_threads(1)
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def tiny(name: str, seed: int = 0, **kwargs) -> TimmViT:
    torch.manual_seed(seed)
    enc = create_encoder(name, **{**TINY, **kwargs})
    assert isinstance(enc, TimmViT)
    return enc


def tiles(side: int = 56, seed: int = 1) -> torch.Tensor:
    return torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_timm_keys_registers_swiglu_layer_scale_load_strict(tmp_path):
    enc = tiny("vit-timm", patch_size=14, img_size=56, mlp="swiglu", reg_tokens=2, init_values=0.1)
    keys = set(enc.state_dict())
    for k in ("cls_token", "reg_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.attn.qkv.weight",
              "blocks.1.attn.proj.bias", "blocks.0.ls1.gamma", "blocks.0.ls2.gamma", "blocks.0.mlp.fc1_g.weight",
              "blocks.0.mlp.fc1_x.weight", "blocks.0.mlp.fc2.weight", "norm.weight"):  # fmt: skip
        assert k in keys, k
    assert enc.state_dict()["pos_embed"].shape == (1, 16 + 3, 32)  # class + 2 register positions
    path = tmp_path / "w.pth"
    torch.save(enc.state_dict(), path)
    fresh = create_encoder(
        "vit-timm", weights=path, **TINY, patch_size=14, img_size=56, mlp="swiglu", reg_tokens=2, init_values=0.1
    )
    with torch.no_grad():
        assert torch.equal(fresh(tiles()), enc(tiles()))
    assert fresh(tiles()).shape == (2, 32) and fresh.weights_checksum


@pytest.mark.parametrize(("name", "width"), [("uni2-h", 32), ("virchow2", 64), ("h-optimus-0", 32)])
def test_packed_swiglu_presets_from_safetensors(tmp_path, name, width):
    st = pytest.importorskip("safetensors.torch")
    enc = tiny(name)
    sd = enc.state_dict()
    hidden = int(32 * FOUNDATION_PRESETS[name].arch["mlp_ratio"])
    assert sd["blocks.0.mlp.fc1.weight"].shape == (hidden, 32)  # packed: gate and value in one fc1
    assert sd["blocks.0.mlp.fc2.weight"].shape == (32, hidden // 2)
    regs = FOUNDATION_PRESETS[name].arch["reg_tokens"]
    assert sd["reg_token"].shape == (1, regs, 32)
    prefix = 0 if FOUNDATION_PRESETS[name].arch.get("no_embed_class") else 1 + regs
    assert sd["pos_embed"].shape == (1, 256 + prefix, 32)  # 224 px / patch 14
    path = tmp_path / "model.safetensors"
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    fresh = create_encoder(name, weights=path, **TINY)
    with torch.no_grad():
        out = fresh(tiles(224))
        assert torch.equal(out, enc(tiles(224)))
    assert out.shape == (2, width) and fresh.embed_dim == width


def test_prefixed_and_nested_keys_load(tmp_path):
    enc = tiny("uni")
    sd = enc.state_dict()
    for i, wrapped in enumerate(
        [
            {"model": {f"module.{k}": v for k, v in sd.items()}},
            {f"model.{k}": v for k, v in sd.items()} | {"head.weight": torch.zeros(3, 32), "head.bias": torch.zeros(3)},
            {"state_dict": {f"module.model.{k}": v for k, v in sd.items()}, "epoch": 3},
        ]
    ):
        path = tmp_path / f"w{i}.bin"
        torch.save(wrapped, path)
        fresh = create_encoder("uni", weights=path, **TINY)
        with torch.no_grad():
            assert torch.equal(fresh(tiles()), enc(tiles())), i


def test_wrong_keys_give_one_line_error(tmp_path):
    sd = tiny("uni").state_dict()
    del sd["blocks.1.ls2.gamma"]
    sd["blocks.0.mlp.fc3.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(sd, path)
    with pytest.raises(ConfigError) as err:
        create_encoder("uni", weights=path, **TINY)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "1 missing (blocks.1.ls2.gamma)" in msg and "1 unexpected (blocks.0.mlp.fc3.weight)" in msg
    # a file made for another architecture: the shape of the first keys is named
    torch.save(tiny("uni", embed_dim=64).state_dict(), path)
    with pytest.raises(ConfigError, match=r"wrong shape \(blocks\.0\.attn\.proj\.bias \(64,\) vs \(32,\)"):
        create_encoder("uni", weights=path, **TINY)


def test_pos_embed_interpolation_for_other_input_sizes():
    enc = tiny("uni", img_size=64, pool="patch")  # 4 x 4 grid of 16 px patches
    with torch.no_grad():
        for side, grid in ((64, 4), (96, 6), (48, 3), (100, 6)):  # 100 px: floored to 6 patches, as timm
            out = enc.forward_features(tiles(side))
            assert out.shape == (2, 32, grid, grid) and torch.isfinite(out).all()
    pos = torch.randn(1, 1 + 16, 8)
    assert resample_pos_embed(pos, (4, 4), (4, 4), 1) is pos
    flat = torch.cat([pos[:, :1], torch.ones(1, 16, 8) * 0.3], dim=1)  # constant grid: stays constant
    up = resample_pos_embed(flat, (4, 4), (7, 5), 1)
    assert up.shape == (1, 1 + 35, 8) and torch.equal(up[:, :1], pos[:, :1])
    assert torch.allclose(up[:, 1:], torch.full((1, 35, 8), 0.3), atol=1e-5)


def test_virchow2_embedding_is_cls_and_mean_of_patches_without_registers():
    enc = tiny("virchow2")
    with torch.no_grad():
        seq, _ = enc.forward_tokens(enc.normalize(tiles(224)))
        want = torch.cat([seq[:, 0], seq[:, 5:].mean(1)], dim=-1)  # 1 class + 4 registers, as the card
        assert torch.allclose(enc(tiles(224)), want, atol=1e-6)
        assert enc.patch_tokens(tiles(224)).shape == (2, 32, 16, 16)


def test_presets_carry_their_normalisation():
    enc = tiny("h-optimus-0")
    assert torch.allclose(enc.mean.flatten(), torch.tensor([0.707223, 0.578729, 0.703617]))
    assert torch.allclose(tiny("uni").std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert tiny("virchow2").embed_dim == 2 * 32
    with pytest.raises(ConfigError, match="spatial_dims"):
        create_encoder("uni", spatial_dims=3, in_channels=1, **TINY)


def _to_hf(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """A timm-layout state dict written back in Hugging Face ViTModel keys (what Phikon ships)."""
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
        "pooler.dense.weight": torch.zeros(32, 32),
        "pooler.dense.bias": torch.zeros(32),
    }
    names = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
             "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}  # fmt: skip
    for i in range(depth):
        for p in ("weight", "bias"):
            for ours, theirs in names.items():
                out[f"encoder.layer.{i}.{theirs}.{p}"] = sd[f"blocks.{i}.{ours}.{p}"]
            q, k, v = sd[f"blocks.{i}.attn.qkv.{p}"].chunk(3, dim=0)
            for n, t in zip(("query", "key", "value"), (q, k, v), strict=True):
                out[f"encoder.layer.{i}.attention.attention.{n}.{p}"] = t
    return out


def test_phikon_hugging_face_layout_is_remapped(tmp_path):
    enc = tiny("phikon")
    path = tmp_path / "pytorch_model.bin"
    torch.save(_to_hf(enc.state_dict(), 2), path)
    fresh = create_encoder("phikon", weights=path, **TINY)
    with torch.no_grad():
        assert torch.equal(fresh(tiles(224)), enc(tiles(224)))
    assert fresh(tiles(224)).shape == (2, 32)


def test_equal_to_timm_where_it_imports():
    timm = pytest.importorskip("timm")
    from timm.layers import SwiGLU, SwiGLUPacked

    configs = [
        ("uni", dict(patch_size=16, init_values=1e-5), {}),
        ("uni2-h", dict(patch_size=14, init_values=1e-5, mlp_ratio=2.66667 * 2, no_embed_class=True, reg_tokens=8,
                        mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU), {}),
        ("virchow2", dict(patch_size=14, init_values=1e-5, mlp_ratio=5.3375, reg_tokens=4, global_pool="",
                          mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU), {}),
        ("vit-timm", dict(patch_size=14, reg_tokens=2, init_values=0.1, mlp_layer=SwiGLU, act_layer=torch.nn.SiLU,
                          img_size=56),
         dict(patch_size=14, reg_tokens=2, init_values=0.1, mlp="swiglu", img_size=56)),
    ]  # fmt: skip
    for name, kwargs, ours in configs:
        enc = tiny(name, **ours)
        ref = timm.models.vision_transformer.VisionTransformer(
            img_size=kwargs.pop("img_size", 224), embed_dim=32, depth=2, num_heads=2, num_classes=0,
            dynamic_img_size=True, **kwargs,
        ).eval()  # fmt: skip
        ref.load_state_dict(enc.state_dict(), strict=True)
        for side in (224, 252):
            x = tiles(side)
            with torch.no_grad():
                seq = ref.forward_features(enc.normalize(x))
                got, _ = enc.forward_tokens(enc.normalize(x))
            assert torch.allclose(got, seq, atol=1e-5), (name, side)
