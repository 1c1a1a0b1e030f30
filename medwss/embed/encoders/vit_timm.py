"""Pathology foundation-model ViTs whose state-dict keys are timm's, so released weights load ``strict``.

`TimmViT` is timm's ``VisionTransformer`` (inference path) written in plain torch: the same module
names (``patch_embed.proj``, ``cls_token``, ``reg_token``, ``pos_embed``, ``blocks.N.norm1``,
``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.ls1.gamma``, ``blocks.N.norm2``,
``blocks.N.mlp.fc1``/``fc2`` — or ``mlp.fc1_g``/``fc1_x``/``fc2`` for timm's ``SwiGLU`` and a packed
``mlp.fc1`` of twice the hidden width for ``SwiGLUPacked`` — ``blocks.N.ls2.gamma``, ``norm``,
``fc_norm``), the same position-embedding layout (``no_embed_class``) and the same dynamic image
size (position embeddings resampled bicubically, antialiased, for other grids). timm itself is not
needed; where it is installed the tests check that both give the same output.

Registered presets (architecture and input normalisation from the model cards and the loaders
published with them; weights never downloaded, pass the local file with ``weights=``):

============  ======================  =====  =====  =====  ========  ====  ===  ========  =========
name          backbone                width  depth  heads  mlp       reg   ls   input     output
============  ======================  =====  =====  =====  ========  ====  ===  ========  =========
uni           ViT-L/16                1024   24     16     GELU 4x   0     yes  224       CLS 1024
uni2-h        ViT-H/14 (timm giant)   1536   24     24     SwiGLU*   8     yes  224       CLS 1536
virchow2      ViT-H/14                1280   32     16     SwiGLU*   4     yes  224       CLS+mean 2560
h-optimus-0   ViT-g/14                1536   40     24     SwiGLU*   4     yes  224       CLS 1536
h-optimus-1   ViT-g/14                1536   40     24     SwiGLU*   4     yes  224       CLS 1536
phikon        ViT-B/16 (HF layout)    768    12     12     GELU 4x   0     no   224       CLS 768
============  ======================  =====  =====  =====  ========  ====  ===  ========  =========

``SwiGLU*`` is timm's ``SwiGLUPacked`` (one ``fc1`` of 2 × hidden, SiLU on the first half).
Normalisation: ImageNet mean/std for all but H-optimus-0/1 (mean 0.707223, 0.578729, 0.703617;
std 0.211883, 0.230117, 0.177517). Phikon ships as a Hugging Face ``ViTModel`` (keys
``embeddings.*``, ``encoder.layer.N.*``); its file is remapped to the timm layout on load (query,
key and value concatenated into ``qkv``; the unused ``pooler`` dropped).

Example:
    >>> from medwss.embed.encoders import create_encoder
    >>> enc = create_encoder("uni", weights="UNI/pytorch_model.bin")  # doctest: +SKIP
    >>> enc(tiles).shape  # tiles in [0, 1], (B, 3, 224, 224)  # doctest: +SKIP
    torch.Size([B, 1024])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medwss.embed.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, register_encoder
from medwss.errors import ConfigError

MlpKind = Literal["gelu", "swiglu", "swiglu_packed"]
Pool = Literal["cls", "cls+mean", "mean", "patch"]
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)


# --- timm's layers, same names -------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """``patch_embed.proj``: a strided convolution; ``(B, C, H, W)`` → ``(B, h, w, D)`` (sides floored, as timm)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, h, w, D)


class Attention(nn.Module):
    """``attn.qkv`` (one linear of 3 × width) and ``attn.proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"ViT width {dim} is not divisible by {num_heads} heads")
        self.num_heads = int(num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))  # (B, N, C)


class LayerScale(nn.Module):
    """``ls1.gamma`` / ``ls2.gamma``: a learnt per-channel scale."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """timm's ``Mlp``: ``fc1`` → GELU → ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLUPacked(nn.Module):
    """timm's ``SwiGLUPacked`` (``GluMlp`` with SiLU, gate first): ``fc1`` of `hidden` outputs, halves x1, x2; ``fc2(silu(x1) * x2)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if hidden % 2:
            raise ConfigError(f"a packed SwiGLU needs an even hidden width, got {hidden}")
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(x1) * x2)


class SwiGLU(nn.Module):
    """timm's ``SwiGLU``: ``fc2(silu(fc1_g(x)) * fc1_x(x))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1_g(x)) * self.fc1_x(x))


class Block(nn.Module):
    """``blocks.N``: pre-norm attention and MLP, each with an optional layer scale."""

    def __init__(
        self, dim: int, num_heads: int, hidden: int, mlp: MlpKind, init_values: float | None, eps: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.ls1: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        layer = {"gelu": Mlp, "swiglu": SwiGLU, "swiglu_packed": SwiGLUPacked}[mlp]
        self.mlp = layer(dim, hidden)
        self.ls2: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resample_pos_embed(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int], prefix: int) -> torch.Tensor:
    """Position embeddings ``(1, prefix + h0·w0, D)`` resampled to a ``new`` grid (bicubic, antialiased, as timm)."""
    if old == new:
        return pos
    head, grid = pos[:, :prefix], pos[:, prefix:]
    d = grid.shape[-1]
    grid = grid.float().reshape(1, old[0], old[1], d).permute(0, 3, 1, 2)  # (1, D, h0, w0)
    grid = F.interpolate(grid, size=new, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], d).to(pos.dtype)
    return torch.cat([head, grid], dim=1) if prefix else grid


# --- the encoder ---------------------------------------------------------------------------------


class TimmViT(Encoder):
    """timm's ``VisionTransformer`` for feature extraction, with timm's state-dict keys.

    Args:
        name: Registry name.
        spatial_dims: 2 (slides and 2D tiles only).
        in_channels: Input channels (3 for RGB).
        mean: Normalisation mean (default ImageNet).
        std: Normalisation standard deviation.
        img_size: Input side the position embeddings are learnt for; other sides get them resampled.
        patch_size: Patch side.
        embed_dim: Token width.
        depth: Transformer blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width / `embed_dim` (timm: ``int(embed_dim * mlp_ratio)``; for the packed
            SwiGLU that is the width of ``fc1``, twice the gated width).
        mlp: ``gelu`` (``Mlp``), ``swiglu`` (``fc1_g``/``fc1_x``) or ``swiglu_packed`` (one ``fc1``).
        reg_tokens: Register tokens (``reg_token``).
        class_token: Whether there is a ``cls_token``.
        no_embed_class: Position embeddings cover the patches only (prefix tokens get none), as timm's flag.
        init_values: Layer-scale initial value; None or 0 for no layer scale (no ``ls*.gamma`` keys).
        pool: What the embedding is: ``cls`` (class token after the final norm), ``cls+mean`` (class
            token concatenated with the mean of the patch tokens, Virchow's, width 2 × `embed_dim`),
            ``mean`` (mean of patch tokens, then ``fc_norm`` when `fc_norm`), or ``patch``
            (`forward_features` returns the patch-token map; its average is the embedding).
        fc_norm: timm's ``fc_norm`` (final norm after pooling instead of ``norm`` before it), for ``mean``.
        eps: LayerNorm epsilon (timm 1e-6; Hugging Face ViT 1e-12).
        input_size: Resize every input tile to this side (bilinear, antialiased) before the network;
            None feeds tiles at their own size (position embeddings resampled).
        hf_layout: Weights files come in Hugging Face ``ViTModel`` keys (remapped on load).

    With ``pool`` other than ``patch``, `forward_features` returns the embedding as a ``(B, E, 1, 1)``
    map (as TorchScript encoders that pool themselves); `patch_tokens` gives the patch-token map and
    `forward_tokens` the whole token sequence.
    """

    strict_weights = True
    """`medwss.embed.encoders.weights.load_weights` loads this encoder strict: every key must fit."""

    def __init__(
        self,
        name: str = "vit-timm",
        spatial_dims: int = 2,
        in_channels: int = 3,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        mlp: MlpKind = "gelu",
        reg_tokens: int = 0,
        class_token: bool = True,
        no_embed_class: bool = False,
        init_values: float | None = None,
        pool: Pool = "cls",
        fc_norm: bool = False,
        eps: float = 1e-6,
        input_size: int | None = None,
        hf_layout: bool = False,
    ) -> None:
        if spatial_dims != 2:
            raise ConfigError(f"encoder '{name}' is 2D only, got spatial_dims={spatial_dims}")
        if mlp not in ("gelu", "swiglu", "swiglu_packed"):
            raise ConfigError(f"encoder '{name}': mlp must be gelu, swiglu or swiglu_packed, got {mlp!r}")
        if pool not in ("cls", "cls+mean", "mean", "patch"):
            raise ConfigError(f"encoder '{name}': pool must be cls, cls+mean, mean or patch, got {pool!r}")
        if pool in ("cls", "cls+mean") and not class_token:
            raise ConfigError(f"encoder '{name}': pool={pool!r} needs a class token")
        if img_size % patch_size:
            raise ConfigError(f"encoder '{name}': img_size {img_size} is not a multiple of patch_size {patch_size}")
        out_dim = 2 * embed_dim if pool == "cls+mean" else embed_dim
        super().__init__(name, spatial_dims, in_channels, out_dim, mean, std)
        self.width = int(embed_dim)
        self.pool = pool
        self.input_size = input_size
        self.hf_layout = hf_layout
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_reg_tokens = int(reg_tokens)
        self.num_prefix_tokens = int(class_token) + self.num_reg_tokens
        self.no_embed_class = bool(no_embed_class)
        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        n_pos = self.grid[0] * self.grid[1] + (0 if no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, n_pos, embed_dim) * 0.02)
        hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, hidden, mlp, init_values, eps) for _ in range(depth)))
        self.norm: nn.Module = nn.Identity() if fc_norm else nn.LayerNorm(embed_dim, eps=eps)
        self.fc_norm: nn.Module = nn.LayerNorm(embed_dim, eps=eps) if fc_norm else nn.Identity()
        for p in (self.cls_token, self.reg_token):
            if p is not None:
                nn.init.normal_(p, std=1e-6)
        self.apply(_init_linear)

    # tokens ------------------------------------------------------------------------------------

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, h, w, D)`` → sequence with prefix tokens and position embeddings ``(B, P + h·w, D)``."""
        b, h, w, d = x.shape
        prefix = 0 if self.no_embed_class else self.num_prefix_tokens
        pos = resample_pos_embed(self.pos_embed, self.grid, (h, w), prefix)
        x = x.reshape(b, h * w, d)
        extra = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.no_embed_class:
            return torch.cat([*extra, x + pos], dim=1)
        return torch.cat([*extra, x], dim=1) + pos

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The final token sequence of a *normalised* batch, ``(B, P + h·w, D)`` (P prefix tokens), and the grid ``(h, w)``."""
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        p = self.patch_embed.patch_size
        if x.shape[-2] < p or x.shape[-1] < p:
            raise ValueError(f"{self.name}: input sides {tuple(x.shape[-2:])} are smaller than the patch size {p}")
        t = self.patch_embed(x)  # (B, h, w, D)
        grid = (int(t.shape[1]), int(t.shape[2]))
        t = self.blocks(self._pos_embed(t))  # (B, P + h·w, D)
        return self.norm(t), grid

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-token map ``(B, D, h, w)`` of a batch of tiles in [0, 1] (after the final norm)."""
        t, (h, w) = self.forward_tokens(self.normalize(x))
        patches = t[:, self.num_prefix_tokens :]  # (B, h·w, D)
        return patches.transpose(1, 2).reshape(t.shape[0], self.width, h, w)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        t, (h, w) = self.forward_tokens(x)  # (B, P + h·w, D)
        patches = t[:, self.num_prefix_tokens :]
        if self.pool == "patch":
            return patches.transpose(1, 2).reshape(t.shape[0], self.width, h, w)  # (B, D, h, w)
        if self.pool == "cls":
            emb = t[:, 0]
        elif self.pool == "cls+mean":
            emb = torch.cat([t[:, 0], patches.mean(dim=1)], dim=-1)  # (B, 2D)
        else:
            emb = self.fc_norm(patches.mean(dim=1))
        return emb[:, :, None, None]  # (B, E, 1, 1)

    # weights -----------------------------------------------------------------------------------

    def remap_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A weights file's state dict in this module's keys: wrapper prefixes stripped, HF ViT keys remapped.

        Prefixes ``module.``, ``model.``, ``vit.``, ``backbone.``, ``trunk.`` (and ``encoder.`` before a
        timm key) are removed; a classifier ``head.*`` is dropped (embeddings are pre-logits); Hugging
        Face ``ViTModel`` keys are converted (`hf_vit_to_timm`).
        """
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            k = _strip(key)
            if k.startswith("head.") or k == "head":
                continue
            out[k] = value
        if any(k.startswith(("embeddings.", "encoder.layer.")) for k in out):
            out = hf_vit_to_timm(out)
        return out


_TIMM_ROOTS = ("cls_token", "reg_token", "pos_embed", "patch_embed.", "blocks.", "norm.", "fc_norm.", "head.")
_HF_ROOTS = ("embeddings.", "encoder.layer.", "layernorm.", "pooler.")
_WRAPPERS = ("module.", "model.", "vit.", "backbone.", "trunk.", "encoder.", "_orig_mod.")


def _strip(key: str) -> str:
    k = key
    while not k.startswith(_TIMM_ROOTS + _HF_ROOTS) and k.startswith(_WRAPPERS):
        k = k.split(".", 1)[1]
    return k


def hf_vit_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ``ViTModel`` keys → timm ``VisionTransformer`` keys (query/key/value packed into ``qkv``).

    ``pooler.*`` is dropped (the CLS embedding is taken before it, as Phikon's card does); any other
    key is kept as it is, so a strict load names it.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    plain = {
        "embeddings.cls_token": "cls_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    inner = {
        "layernorm_before": "norm1",
        "layernorm_after": "norm2",
        "attention.output.dense": "attn.proj",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
    }
    for key, value in state.items():
        if key.startswith("pooler."):
            continue
        if key in plain:
            out[plain[key]] = value
            continue
        if key.startswith("encoder.layer."):
            idx, rest = key[len("encoder.layer.") :].split(".", 1)
            module, _, param = rest.rpartition(".")
            if module.startswith("attention.attention."):
                qkv.setdefault((idx, param), {})[module.rsplit(".", 1)[1]] = value
                continue
            if module in inner:
                out[f"blocks.{idx}.{inner[module]}.{param}"] = value
                continue
        out[key] = value
    for (idx, param), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"encoder.layer.{idx}.attention.attention.{n}.{param}": v for n, v in parts.items()})
            continue
        out[f"blocks.{idx}.attn.qkv.{param}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# --- presets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A foundation model's architecture, normalisation and output convention, and where they are documented."""

    arch: dict[str, Any]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    card: str = ""
    notes: str = ""
    weights_file: str = "pytorch_model.bin"
    extra: dict[str, Any] = field(default_factory=dict)


_VIT_224: dict[str, Any] = dict(img_size=224, init_values=1e-5, pool="cls")
"""What the timm-layout presets share: 224 px input, layer scale 1e-5, CLS-token embedding."""
_GIANT_14: dict[str, Any] = _VIT_224 | dict(
    patch_size=14, embed_dim=1536, num_heads=24, mlp_ratio=2.66667 * 2, mlp="swiglu_packed", no_embed_class=True
)
"""timm's giant patch-14 SwiGLU ViT (UNI2-h and H-optimus differ in depth and registers only)."""
_HOPTIMUS_ARCH: dict[str, Any] = _GIANT_14 | dict(depth=40, reg_tokens=4)
"""timm vit_giant_patch14_reg4_dinov2 at 224 px (H-optimus-0 and -1)."""


FOUNDATION_PRESETS: dict[str, Preset] = {
    "uni": Preset(
        _VIT_224 | dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, mlp="gelu"),
        card="https://huggingface.co/MahmoodLab/UNI",
        notes="timm vit_large_patch16_224, init_values 1e-5, dynamic image size; the card's embedding is the "
        "CLS token (timm num_classes=0); 224 px at 20x (0.5 µm/px).",
    ),
    "uni2-h": Preset(
        _GIANT_14 | dict(depth=24, reg_tokens=8),
        card="https://huggingface.co/MahmoodLab/UNI2-h",
        notes="the card's timm_kwargs (vit_giant_patch14_224 overridden: 1536 wide, 24 deep, 24 heads, "
        "SwiGLUPacked + SiLU, 8 registers, no_embed_class); embedding = CLS token.",
    ),
    "virchow2": Preset(
        _VIT_224
        | dict(
            patch_size=14,
            embed_dim=1280,
            depth=32,
            num_heads=16,
            mlp_ratio=5.3375,
            mlp="swiglu_packed",
            reg_tokens=4,
            pool="cls+mean",
        ),
        card="https://huggingface.co/paige-ai/Virchow2",
        notes="timm vit_huge_patch14_224 with mlp_ratio 5.3375, SwiGLUPacked + SiLU, 4 registers, position "
        "embeddings over class and register tokens too (timm default); embedding = concat(CLS, mean of "
        "the 256 patch tokens, registers excluded) = 2560, as the card.",
    ),
    "h-optimus-0": Preset(
        dict(_HOPTIMUS_ARCH),
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
        card="https://huggingface.co/bioptimus/H-optimus-0",
        notes="timm vit_giant_patch14_reg4_dinov2 at img_size 224, global_pool token (CLS); the card's "
        "normalisation; 224 px at 0.5 µm/px.",
    ),
    "h-optimus-1": Preset(
        dict(_HOPTIMUS_ARCH),
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
        card="https://huggingface.co/bioptimus/H-optimus-1",
        notes="same timm architecture and normalisation as H-optimus-0 (as TRIDENT's loader builds it); not "
        "checked against released weights here.",
    ),
    "phikon": Preset(
        dict(
            img_size=224,
            patch_size=16,
            embed_dim=768,
            depth=12,
            num_heads=12,
            mlp_ratio=4.0,
            mlp="gelu",
            pool="cls",
            eps=1e-12,
            hf_layout=True,
        ),
        card="https://huggingface.co/owkin/phikon",
        notes="Hugging Face ViTModel (iBOT ViT-B/16), keys remapped to timm's; embedding = "
        "last_hidden_state[:, 0] (CLS). LayerNorm eps 1e-12 is Hugging Face ViTConfig's default, assumed "
        "(not read from the released config here). Hugging Face does not resample position embeddings "
        "unless asked; feed 224 px tiles to match it.",
        weights_file="pytorch_model.bin or model.safetensors",
    ),
}
"""The registered foundation-model layouts (see the module docstring)."""


def _preset(name: str) -> None:
    preset = FOUNDATION_PRESETS[name]

    @register_encoder(name, spatial_dims=(2,))
    def factory(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
        opts = {"mean": preset.mean, "std": preset.std, **preset.arch, **kwargs}
        return TimmViT(name, spatial_dims, in_channels, **opts)

    factory.__doc__ = f"{name}: {preset.notes} Card: {preset.card}. Weights: a local {preset.weights_file}."


for _name in FOUNDATION_PRESETS:
    _preset(_name)


@register_encoder("vit-timm", spatial_dims=(2,))
def vit_timm(spatial_dims: int = 2, in_channels: int = 3, **kwargs: Any) -> Encoder:
    """A ViT in timm's layout, every option of `TimmViT` configurable (default ViT-B/16, CLS)."""
    return TimmViT("vit-timm", spatial_dims, in_channels, **kwargs)


def describe(name: str) -> str:
    """One line per preset: architecture, normalisation and output width (for docs and ``--list``)."""
    p = FOUNDATION_PRESETS[name]
    a = p.arch
    width = a["embed_dim"] * (2 if a.get("pool") == "cls+mean" else 1)
    return (
        f"{name}: ViT patch {a['patch_size']}, width {a['embed_dim']}, depth {a['depth']}, heads {a['num_heads']}, "
        f"mlp {a.get('mlp', 'gelu')} x{a['mlp_ratio']:.4g}, registers {a.get('reg_tokens', 0)}, input {a['img_size']}, "
        f"output {a.get('pool', 'cls')} ({width}); mean {p.mean}, std {p.std}"
    )
