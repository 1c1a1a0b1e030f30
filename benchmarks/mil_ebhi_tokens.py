"""INSIGHT's token layout on real H&E tiles (EBHI-Seg): tile labels in, a token heatmap per tile out.

Usage:
    python benchmarks/mil_ebhi_tokens.py [--quick] [--data ../shared/data/real] [--seeds 0 1 2]
        [--encoders stats resnet18_random resnet18_ssl] [--insight-kwargs '{"hidden": 64}']
        [--work DIR] [--out benchmarks/results]

Each 224 × 224 EBHI tile (``histo/ebhi/manifest.csv``) is one bag; its instances are the spatial
tokens of an encoder's feature map, its label the tile's (malignant 1: high-grade IN and
adenocarcinoma; benign 0: normal, polyp, low-grade IN). The manifest's patient-level ``split``
is used as it is: models are trained on ``train``, the best epoch, the pixel threshold and every
setting (``--insight-kwargs``) are chosen on ``val``, figures are reported on ``test``.

Encoders (nothing is downloaded; token maps from `Encoder.forward_features`, standardised per
channel with the training tiles' statistics):

- ``stats``: the weight-free statistics encoder on a 7 × 7 grid of 32 px cells (78 channels;
  ``--stats-cells 14`` for 16 px cells, four times the MIL cost).
- ``resnet18_random``: MONAI ResNet-18 (widen factor 0.5, 256 channels, 7 × 7 tokens), random init.
- ``resnet18_ssl``: the same network pretrained in-domain with `medwss.embed.pretrain.pretrain`
  (SimCLR/NT-Xent, no labels) on 112 px quadrant crops of the *training* tiles only; the weights
  are cached under ``--work`` and reused (one pretraining, seed 0, for all MIL seeds).

Methods, each trained with the MIL engine (`medwss.mil.train.train`, model selection on val loss):

- ``insight``: ``create_aggregator("insight", C, 1, layout="tokens", **insight_kwargs)`` on bags of
  one tile carrying its token map. Its heatmap is read from the output's ``dense`` map when the
  aggregator gives one for the tokens layout, else from a ``layout="grid"`` twin that loads the same
  weights and sees the tokens as instances on the h × w grid (the same convolutions on the same map;
  the benchmark checks that the twin's tile probabilities equal the trained model's).
- ``abmil``: gated attention over the tokens as instances; the heatmap is the min-max-normalised attention.
- ``clam_sb``: CLAM's single-branch gated attention with the instance-clustering loss; the heatmap is
  the min-max-normalised attention.
- ``transmil``: the TransMIL transformer over the tokens as gridded instances; the heatmap is the
  min-max-normalised class-token attention (`medwss.mil.transmil`).
- ``max`` / ``mean``: instance pooling baselines; the heatmap is the tokens' instance probabilities.
- ``gradcam`` (CNN encoders only): a linear head on the frozen encoder's average-pooled, standardised
  tokens, trained on the tile labels (class-balanced BCE, Adam); Grad-CAM at ``layer4``
  (`medwss.counterfactual.attribution.gradcam`) on the encoder + head.
- ``whole tile`` (reference, no model): every pixel called malignant.

Metrics: test tile AUC (bootstrap 95% CI, `medwss.eval.metrics.classification_report`); on the
malignant test tiles, pixel Dice and IoU (`medwss.eval.overlap`) of the heatmap upsampled bilinearly
to 224 × 224 and thresholded (a) at the threshold that maximises mean Dice on the malignant *val*
tiles (candidates: quantiles of the val heatmap values) and (b) per tile by Otsu; bootstrap 95% CIs
over tiles. Seeds: mean ± sd over seeds, with the mean of the per-seed CIs. Cost: seconds to train
and to score val + test, embedding and pretraining seconds.

What was cut to fit ~15 min on 2 CPU cores: ResNet-18 at widen factor 0.5; pretraining a few
epochs on crops; no fine-tuning of the encoder for the Grad-CAM classifier (a frozen encoder + a
linear head); at most ``--epochs`` MIL epochs with early stopping. ``--quick``: a few tiles per
split, one seed, two epochs, for the smoke test.

Results: benchmarks/results/mil_ebhi_tokens[_quick].json and .md (``--name`` for another name). The
README's figures come from one run per encoder on a shared 2-core CPU (4–5 min CPU each)::

    python benchmarks/mil_ebhi_tokens.py --encoders stats --epochs 8 --name mil_ebhi_tokens_stats
    python benchmarks/mil_ebhi_tokens.py --encoders resnet18_random --epochs 8 --name mil_ebhi_tokens_resnet18_random
    python benchmarks/mil_ebhi_tokens.py --encoders resnet18_ssl --ssl-epochs 2 --epochs 8 --work /tmp/ebwork \
        --name mil_ebhi_tokens_resnet18_ssl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"
ENCODERS = ("stats", "resnet18_random", "resnet18_ssl")
MIL_METHODS = ("insight", "abmil", "clam_sb", "transmil", "max", "mean")
METHODS = (*MIL_METHODS, "gradcam")
DEFAULT_INSIGHT: dict[str, Any] = {"hidden": 64, "context_depth": 2, "dropout": 0.1}
"""INSIGHT settings (besides ``layout="tokens"``); chosen on the val split, see README."""
RESNET_KWARGS: dict[str, Any] = {"widen_factor": 0.5}
SIZE = 224


# --- data -----------------------------------------------------------------------------------------
def load_tiles(data: Path, per_split: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Images (N, 3, 224, 224) uint8, masks (N, 224, 224) bool, labels, splits; bad tiles are skipped and listed.

    With `per_split`, a seeded, label-balanced subset of that many tiles per split (quick mode).
    """
    from PIL import Image

    from medwss.data.manifest import load_manifest

    manifest = load_manifest(data / "histo" / "ebhi" / "manifest.csv")
    cases = [c for c in manifest.cases if c.label is not None and c.split in ("train", "val", "test")]
    if per_split is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for split in ("train", "val", "test"):
            for label in (0, 1):
                pool = [c for c in cases if c.split == split and c.label == label]
                take = (per_split + 1 - label) // 2
                keep += [pool[i] for i in sorted(rng.choice(len(pool), min(take, len(pool)), replace=False))]
        cases = keep
    images, masks, kept, skipped = [], [], [], []
    for c in cases:
        try:
            with Image.open(c.image) as im:
                img = np.asarray(im.convert("RGB"))
            if c.mask is None:
                raise ValueError("no mask")
            with Image.open(c.mask) as mk:
                mask = np.asarray(mk.convert("L")) > 0
            if img.shape != (SIZE, SIZE, 3) or mask.shape != (SIZE, SIZE):
                raise ValueError(f"expected {SIZE}×{SIZE} image and mask, got {img.shape} and {mask.shape}")
        except (OSError, ValueError) as exc:
            skipped.append(f"{c.image}: {exc}")
            continue
        images.append(img.transpose(2, 0, 1))
        masks.append(mask)
        kept.append(c)
    if skipped:
        print(f"skipped {len(skipped)} tiles: " + "; ".join(skipped), file=sys.stderr)
    return {
        "cases": kept,
        "images": torch.from_numpy(np.stack(images)),
        "masks": np.stack(masks),
        "labels": np.array([c.label for c in kept], dtype=np.int64),
        "splits": np.array([c.split for c in kept]),
        "skipped": skipped,
    }


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0  # (B, 3, H, W) in [0, 1]


# --- encoders -------------------------------------------------------------------------------------
def quadrant_crops(images: torch.Tensor) -> torch.Tensor:
    """The four 112 px quadrants of each tile: (N, 3, 224, 224) uint8 → (4N, 3, 112, 112) float in [0, 1]."""
    h = SIZE // 2
    parts = [images[:, :, i : i + h, j : j + h] for i in (0, h) for j in (0, h)]
    return as_float(torch.cat(parts))


def build_encoder(
    name: str, train_images: torch.Tensor, work: Path, ssl_epochs: int, stats_cells: int = 7
) -> tuple[Any, dict]:
    """The encoder `name` (pretraining ``resnet18_ssl`` on the training tiles, or reusing its cached weights)."""
    from medwss.embed.encoders import create_encoder

    if name == "stats":
        return create_encoder("stats", cells=stats_cells), {}
    if name == "resnet18_random":
        torch.manual_seed(0)
        return create_encoder("resnet18", **RESNET_KWARGS), {}
    if name != "resnet18_ssl":
        raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    from medwss.embed.pretrain import PretrainConfig, pretrain

    weights = work / f"ssl_resnet18_e{ssl_epochs}_n{len(train_images)}.pt"
    info: dict[str, Any] = {"weights": str(weights), "ssl_epochs": ssl_epochs, "ssl_tiles": len(train_images)}
    if weights.exists():
        info["pretrain_seconds"] = json.loads(weights.with_suffix(".json").read_text())["seconds"]
        return create_encoder("resnet18", weights=weights, **RESNET_KWARGS), info
    torch.manual_seed(0)
    enc = create_encoder("resnet18", **RESNET_KWARGS)
    cfg = PretrainConfig(encoder="resnet18", encoder_kwargs=RESNET_KWARGS, epochs=ssl_epochs, batch_size=64,
                         device="cpu", amp=False, seed=0, out=str(weights))  # fmt: skip
    t0 = time.perf_counter()
    res = pretrain(enc, quadrant_crops(train_images), cfg, progress=False)
    info["pretrain_seconds"] = time.perf_counter() - t0
    info["pretrain_loss"] = [h["loss"] for h in res["history"]]
    from medwss.io.atomic import write_json

    write_json(weights.with_suffix(".json"), {"seconds": info["pretrain_seconds"], **info})
    return enc, info


@torch.no_grad()
def token_maps(encoder: Any, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    """Token maps (N, C, h, w) float32 of uint8 tiles (N, 3, H, W)."""
    encoder.eval()
    out = [encoder.forward_features(as_float(images[i : i + batch])).float() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()


def standardise(tokens: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel z-scores with the training tiles' token statistics; returns them, the mean and the sd."""
    t = tokens[train].transpose(1, 0, 2, 3).reshape(tokens.shape[1], -1)
    mu, sd = t.mean(1), t.std(1) + 1e-6
    return ((tokens - mu[None, :, None, None]) / sd[None, :, None, None]).astype(np.float32), mu, sd


# --- MIL ------------------------------------------------------------------------------------------
def make_bags(method: str, tokens: np.ndarray, cases: list, labels: np.ndarray, idx: np.ndarray) -> list:
    """One `LabelledBag` per tile: the token map (INSIGHT, tokens layout) or the tokens as gridded instances."""
    from medwss.mil.base import Bag
    from medwss.mil.data import LabelledBag

    _, c, h, w = tokens.shape
    grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2)
    out = []
    for i in idx:
        t = torch.from_numpy(tokens[i])  # (C, h, w)
        inst = t.flatten(1).T.contiguous()  # (h·w, C)
        tile = Bag(t.mean((1, 2))[None], tokens=t[None])  # features (1, C), tokens (1, C, h, w)
        bag = tile if method == "insight" else Bag(inst, grid, (h, w))
        out.append(LabelledBag(cases[i], bag, torch.tensor([float(labels[i])])))
    return out


def grid_twin(model: Any, in_dim: int, kwargs: dict[str, Any]) -> Any:
    """An INSIGHT with ``layout="grid"`` holding `model`'s weights (same modules, other layout)."""
    from medwss.mil.registry import create_aggregator

    twin = create_aggregator("insight", in_dim, 1, **{**kwargs, "layout": "grid"})
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@torch.no_grad()
def mil_outputs(method: str, model: Any, tokens: np.ndarray, cases: list, labels: np.ndarray, idx: np.ndarray,
                insight_kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Tile probabilities (n,), token heatmaps (n, h, w) and, for INSIGHT's twin, the largest probability gap."""
    _, c, h, w = tokens.shape
    model.eval()
    bags = make_bags(method, tokens, cases, labels, idx)
    grid_bags = make_bags("abmil", tokens, cases, labels, idx) if method == "insight" else bags
    twin = None
    probs, maps, gap = [], [], 0.0
    for lb, gb in zip(bags, grid_bags, strict=True):
        out = model(lb.bag)
        p = float(out.probs[-1])
        if method != "insight":
            hm = out.scores[:, -1].reshape(h, w)
        elif out.dense is not None and out.dense[-1].numel() == h * w:
            hm = out.dense[-1].reshape(h, w)
        else:
            twin = twin or grid_twin(model, c, insight_kwargs)
            t_out = twin(gb.bag)
            gap = max(gap, abs(float(t_out.probs[-1]) - p))
            hm = t_out.scores[:, -1].reshape(h, w)
        probs.append(p)
        maps.append(hm.float().numpy())
    return np.array(probs), np.stack(maps), gap


def mil_lr(args: argparse.Namespace) -> float:
    """The MIL learning rate of every method: ``--lr``, else the library default (`MILTrainConfig.lr`)."""
    from medwss.mil.train import MILTrainConfig

    return float(args.lr) if args.lr is not None else float(MILTrainConfig().lr)


def train_mil(method: str, tokens: np.ndarray, data: dict, seed: int, epochs: int, work: Path,
              insight_kwargs: dict[str, Any], lr: float | None = None) -> tuple[Any, float, dict]:  # fmt: skip
    from medwss.mil.registry import create_aggregator
    from medwss.mil.train import MILTrainConfig, train
    from medwss.train.device import seed_everything

    split = data["splits"]
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    kwargs = {"layout": "tokens", **insight_kwargs} if method == "insight" else {}
    seed_everything(seed)
    model = create_aggregator(method, tokens.shape[1], 1, **kwargs)
    cfg = MILTrainConfig(aggregator=method, aggregator_kwargs=kwargs, epochs=epochs, seed=seed, amp=False,
                         device="cpu", patience=3, min_epochs=min(3, epochs), tokens=method == "insight",
                         **({} if lr is None else {"lr": lr}))  # fmt: skip
    train_bags = make_bags(method, tokens, data["cases"], data["labels"], tr)
    val_bags = make_bags(method, tokens, data["cases"], data["labels"], va)
    t0 = time.perf_counter()
    fit = train(model, train_bags, val_bags, cfg, work, torch.device("cpu"), progress=False)
    curve = [{k: h.get(k) for k in ("epoch", "train_loss", "val_loss", "val_auc")} for h in fit["history"]]
    return model, time.perf_counter() - t0, {"best_epoch": fit["best_epoch"], "best_val_auc": fit["best_val_auc"],
                                             "epochs_run": len(fit["history"]), "curve": curve}  # fmt: skip


# --- Grad-CAM on a tile classifier ----------------------------------------------------------------
class TileClassifier(torch.nn.Module):
    """Frozen encoder → per-channel standardisation → global average pooling → linear head (one logit)."""

    def __init__(self, encoder: Any, mu: np.ndarray, sd: np.ndarray, head: torch.nn.Linear) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (self.encoder.forward_features(x) - self.mu) / self.sd  # (B, C, h, w)
        return self.head(t.mean((2, 3)))  # (B, 1)


def train_head(z: np.ndarray, y: np.ndarray, seed: int, steps: int = 300) -> torch.nn.Linear:
    """A class-balanced logistic head on pooled features (n, C), full-batch Adam, seeded init."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    x, t = torch.from_numpy(z), torch.from_numpy(y.astype(np.float32))[:, None]
    pos = float(t.mean().clamp(0.05, 0.95))
    weight = torch.where(t > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), t, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def gradcam_method(encoder: Any, tokens: np.ndarray, mu: np.ndarray, sd: np.ndarray, data: dict, seed: int,
                   score_idx: np.ndarray, map_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Tile probabilities for `score_idx` and Grad-CAM maps (n, 224, 224) for `map_idx`; training seconds."""
    from medwss.counterfactual.attribution.gradcam import gradcam

    tr = np.flatnonzero(data["splits"] == "train")
    pooled = tokens.mean((2, 3))  # standardised tokens, pooled: (N, C)
    t0 = time.perf_counter()
    head = train_head(pooled[tr], data["labels"][tr], seed)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        probs = torch.sigmoid(head(torch.from_numpy(pooled[score_idx])))[:, 0].numpy()
    model = TileClassifier(encoder, mu, sd, head).eval()
    maps = [gradcam(model, as_float(data["images"][torch.from_numpy(b)]), target=0, layer="encoder.backbone.layer4")
            for b in _batches(map_idx, 8)]  # fmt: skip
    return probs, np.concatenate(maps), seconds


def _batches(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


# --- pixel metrics --------------------------------------------------------------------------------
def upsample_maps(maps: np.ndarray) -> np.ndarray:
    """Token heatmaps (n, h, w) → (n, 224, 224), bilinear (the maps already at full size pass through)."""
    from medwss.counterfactual.attribution.base import upsample

    if maps.shape[1:] == (SIZE, SIZE):
        return maps.astype(np.float32)
    return upsample(torch.from_numpy(maps), (SIZE, SIZE)).numpy()


def dice_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile Dice and IoU of boolean (n, H, W) predictions against (n, H, W) masks."""
    from medwss.eval.overlap import dice_from_counts, iou_from_counts

    inter = (pred & gt).sum((1, 2))
    n_pred, n_gt = pred.sum((1, 2)), gt.sum((1, 2))
    return dice_from_counts(inter, n_pred, n_gt), iou_from_counts(inter, n_pred, n_gt)


def choose_threshold(maps: np.ndarray, gt: np.ndarray, n: int = 49) -> tuple[float, float]:
    """The threshold (among quantiles of the values) maximising mean Dice; returns it and that Dice."""
    cands = np.unique(np.quantile(maps, np.linspace(0.02, 0.98, n)))
    scores = [float(dice_iou(maps >= t, gt)[0].mean()) for t in cands]
    best = int(np.argmax(scores))
    return float(cands[best]), scores[best]


def otsu_pred(maps: np.ndarray) -> np.ndarray:
    from medwss.embed.tissue import otsu_threshold

    return np.stack([m > otsu_threshold(m) for m in maps])


def pixel_report(val_maps: np.ndarray, val_gt: np.ndarray, test_maps: np.ndarray, test_gt: np.ndarray,
                 seed: int) -> dict[str, float]:  # fmt: skip
    """Dice/IoU with CIs on the test tiles at the val-chosen threshold and with per-tile Otsu."""
    from medwss.eval.metrics import mean_ci, roc_auc

    thr, val_dice = choose_threshold(val_maps, val_gt)
    out: dict[str, float] = {"threshold": thr, "val_dice": val_dice}
    aucs = np.array([roc_auc(g.ravel().astype(int), m.ravel()) for m, g in zip(test_maps, test_gt, strict=True)
                     if 0 < g.mean() < 1])  # fmt: skip
    out["pixel_auc"], out["pixel_auc_lo"], out["pixel_auc_hi"] = mean_ci(aucs, seed=seed)
    for name, pred in (("val_t", test_maps >= thr), ("otsu", otsu_pred(test_maps))):
        d, j = dice_iou(pred, test_gt)
        for metric, v in (("dice", d), ("iou", j)):
            est, lo, hi = mean_ci(v, seed=seed)
            out |= {f"{metric}_{name}": est, f"{metric}_{name}_lo": lo, f"{metric}_{name}_hi": hi}
    return out


# --- one encoder ----------------------------------------------------------------------------------
def run_encoder(
    name: str, data: dict, args: argparse.Namespace, ssl_dir: Path, runs_dir: Path
) -> tuple[list[dict], dict]:
    """Embed every tile with encoder `name`, then train and score every method and seed on its tokens."""
    from medwss.eval.metrics import classification_report

    split, labels, masks = data["splits"], data["labels"], data["masks"]
    tr = np.flatnonzero(split == "train")
    va, te = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")
    va_m, te_m = va[labels[va] == 1], te[labels[te] == 1]
    enc, info = build_encoder(name, data["images"][tr], ssl_dir, args.ssl_epochs, args.stats_cells)
    t0 = time.perf_counter()
    raw = token_maps(enc, data["images"])
    info["embed_seconds"] = time.perf_counter() - t0
    tokens, mu, sd = standardise(raw, tr)
    info["token_map"] = list(tokens.shape[1:])
    print(f"{name}: token maps {tuple(tokens.shape)} in {info['embed_seconds']:.0f} s", flush=True)
    methods = [m for m in args.methods if m != "gradcam" or name != "stats"]
    runs = []
    for method in methods:
        for seed in args.seeds:
            t0 = time.perf_counter()
            extra: dict[str, Any] = {}
            if method == "gradcam":
                probs_all, maps, train_s = gradcam_method(enc, tokens, mu, sd, data, seed, np.r_[va, te],
                                                          np.r_[va_m, te_m])  # fmt: skip
                p_val, p_test = probs_all[: len(va)], probs_all[len(va) :]
                val_maps, test_maps = maps[: len(va_m)], maps[len(va_m) :]
                val_auc = classification_report(labels[va], p_val, n_boot=0)["auc"]
            else:
                model, train_s, extra = train_mil(method, tokens, data, seed, args.epochs,
                                                  runs_dir / f"{name}_{method}_{seed}", args.insight_kwargs,
                                                  mil_lr(args))  # fmt: skip
                t1 = time.perf_counter()
                p_val, vm, _ = mil_outputs(method, model, tokens, data["cases"], labels, va, args.insight_kwargs)
                p_test, tm, gap = mil_outputs(method, model, tokens, data["cases"], labels, te, args.insight_kwargs)
                val_maps, test_maps = upsample_maps(vm[labels[va] == 1]), upsample_maps(tm[labels[te] == 1])
                val_auc = extra.pop("best_val_auc")
                extra["infer_seconds"] = time.perf_counter() - t1
                if method == "insight":
                    extra["twin_prob_gap"] = gap
            rep = classification_report(labels[te], p_test, seed=seed)
            px = pixel_report(val_maps, masks[va_m], test_maps, masks[te_m], seed)
            run = {"encoder": name, "method": method, "seed": seed, "auc": rep["auc"], "auc_lo": rep["auc_lo"],
                   "auc_hi": rep["auc_hi"], "balanced_accuracy": rep["balanced_accuracy"], "val_auc": val_auc,
                   **px, "train_seconds": train_s, "seconds": time.perf_counter() - t0,
                   "n_test": len(te), "n_test_malignant": len(te_m), **extra}  # fmt: skip
            runs.append(run)
            print(f"{name} {method} seed {seed}: AUC {run['auc']:.3f} (val {val_auc:.3f}) Dice {run['dice_val_t']:.3f} "
                  f"(val {run['val_dice']:.3f}) Otsu {run['dice_otsu']:.3f} [{run['seconds']:.0f} s]", flush=True)  # fmt: skip
    return runs, info


def whole_tile(data: dict, seed: int) -> dict[str, float]:
    """The reference that calls every pixel of a malignant test tile malignant."""
    from medwss.eval.metrics import mean_ci

    te = np.flatnonzero((data["splits"] == "test") & (data["labels"] == 1))
    gt = data["masks"][te]
    d, j = dice_iou(np.ones_like(gt), gt)
    (dice, dlo, dhi), (iou, ilo, ihi) = mean_ci(d, seed=seed), mean_ci(j, seed=seed)
    return {"dice": dice, "dice_lo": dlo, "dice_hi": dhi, "iou": iou, "iou_lo": ilo, "iou_hi": ihi,
            "mask_fraction": float(gt.mean())}  # fmt: skip


# --- tables ---------------------------------------------------------------------------------------
SUMMARY_KEYS = ("auc", "val_auc", "pixel_auc", "dice_val_t", "iou_val_t", "dice_otsu", "iou_otsu", "val_dice", "train_seconds",
                "seconds")  # fmt: skip


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for enc in dict.fromkeys(r["encoder"] for r in runs):
        for method in METHODS:
            rs = [r for r in runs if r["encoder"] == enc and r["method"] == method]
            if not rs:
                continue
            row: dict[str, Any] = {"encoder": enc, "method": method, "seeds": len(rs)}
            for k in SUMMARY_KEYS:
                v = np.array([r[k] for r in rs], float)
                row[f"{k}_mean"], row[f"{k}_sd"] = float(np.nanmean(v)), float(np.nanstd(v))
                for b in ("lo", "hi"):
                    if f"{k}_{b}" in rs[0]:
                        row[f"{k}_{b}_mean"] = float(np.nanmean([r[f"{k}_{b}"] for r in rs]))
            rows.append(row)
    return rows


def _cell(r: dict, k: str, ci: bool = True) -> str:
    s = f"{r[k + '_mean']:.3f} ± {r[k + '_sd']:.3f}"
    if ci and f"{k}_lo_mean" in r:
        s += f" [{r[k + '_lo_mean']:.2f}, {r[k + '_hi_mean']:.2f}]"
    return s


def to_markdown(res: dict) -> str:
    w = res["whole_tile"]
    lines = [
        f"EBHI-Seg tiles as bags of encoder tokens; train {res['n']['train']} / val {res['n']['val']} / test "
        f"{res['n']['test']} tiles ({res['n']['test_malignant']} malignant test tiles scored at the pixel level); "
        f"seeds {res['seeds']}; INSIGHT kwargs {json.dumps(res['insight_kwargs'])}; MIL lr {res.get('lr', 'n/a')}. "
        "Mean ± sd over seeds [mean of the per-seed bootstrap 95% CIs].",
        "",
        "| encoder | method | test tile AUC | pixel Dice (val threshold) | pixel IoU (val threshold) | Dice (Otsu) "
        "| IoU (Otsu) | pixel AUC | val AUC | val Dice | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["summary"]:
        lines.append(
            f"| {r['encoder']} | {r['method']} | {_cell(r, 'auc')} | {_cell(r, 'dice_val_t')} | {_cell(r, 'iou_val_t')} "
            f"| {_cell(r, 'dice_otsu')} | {_cell(r, 'iou_otsu')} | {_cell(r, 'pixel_auc')} | {r['val_auc_mean']:.3f} | {r['val_dice_mean']:.3f} "
            f"| {r['train_seconds_mean']:.0f} |"
        )
    lines += [
        f"| — | whole tile (reference) | — | {w['dice']:.3f} [{w['dice_lo']:.2f}, {w['dice_hi']:.2f}] "
        f"| {w['iou']:.3f} [{w['iou_lo']:.2f}, {w['iou_hi']:.2f}] | — | — | 0.5 | — | — | 0 |",
        "",
        "| encoder | token map (C, h, w) | embed s (all tiles) | pretrain s |",
        "|---|---|---:|---:|",
    ]
    for name, info in res["encoders"].items():
        pre = f"{info['pretrain_seconds']:.0f}" if "pretrain_seconds" in info else "—"
        lines.append(f"| {name} | {tuple(info['token_map'])} | {info['embed_seconds']:.0f} | {pre} |")
    lines.append(f"\nTotal {res['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import versions, write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few tiles, one seed, two epochs (smoke test)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with histo/ebhi/ (the real-data layout)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoders", nargs="+", choices=ENCODERS, default=list(ENCODERS))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--epochs", type=int, default=10, help="most MIL epochs (early stopping on val loss)")
    ap.add_argument(
        "--lr", type=float, help="MIL learning rate of every method (default: the library's, MILTrainConfig.lr)"
    )
    ap.add_argument("--ssl-epochs", type=int, default=3, help="epochs of in-domain pretraining (resnet18_ssl)")
    ap.add_argument("--stats-cells", type=int, default=7, help="token grid of the stats encoder (cells per side)")
    ap.add_argument("--insight-kwargs", type=json.loads, default=DEFAULT_INSIGHT,
                    help=f"JSON of INSIGHT options besides layout (default {json.dumps(DEFAULT_INSIGHT)})")  # fmt: skip
    ap.add_argument("--work", type=Path, help="working folder; keeps the pretrained encoder (default: temporary)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", help="results file name (default mil_ebhi_tokens[_quick])")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.data / "histo" / "ebhi" / "manifest.csv").exists():
        print(f"{args.data / 'histo' / 'ebhi' / 'manifest.csv'}: not found (pass --data)", file=sys.stderr)
        return 2
    if args.quick:
        args.seeds, args.epochs, args.ssl_epochs = args.seeds[:1], 2, 1
    t0 = time.perf_counter()
    data = load_tiles(args.data, per_split=8 if args.quick else None)
    n = {s: int((data["splits"] == s).sum()) for s in ("train", "val", "test")}
    n["test_malignant"] = int(((data["splits"] == "test") & (data["labels"] == 1)).sum())
    runs, encoders = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs_dir = Path(tmp) / "runs"  # fresh per invocation: the engine would resume an old checkpoint
        for name in args.encoders:
            r, encoders[name] = run_encoder(name, data, args, work, runs_dir)
            runs += r
    res = {"quick": args.quick, "data": str(args.data), "seeds": args.seeds, "epochs": args.epochs,
           "ssl_epochs": args.ssl_epochs, "stats_cells": args.stats_cells, "insight_kwargs": args.insight_kwargs, "lr": mil_lr(args), "n": n, "skipped": data["skipped"],
           "encoders": encoders, "runs": runs, "summary": summarise(runs), "whole_tile": whole_tile(data, 0),
           "seconds": time.perf_counter() - t0, "versions": versions()}  # fmt: skip
    name = args.name or ("mil_ebhi_tokens_quick" if args.quick else "mil_ebhi_tokens")
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
