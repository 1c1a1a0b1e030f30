"""Train a small segmenter on sparse labels with the AGMM loss (CPU-sized; any `TinyFCN`-like network).

Runs on the one engine (`medwss.train.fit`), one optimiser step per round: on the configured
device, seeded (each step's batch is a function of seed and step), resumable from a checkpoint
with the same final weights; a `TinyFCN` is saved as the one model file (kind ``pseudo_agmm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.pseudo.agmm import AGMMLoss
from medwss.pseudo.cams import build_fcn, fcn_config, fingerprint
from medwss.pseudo.nets import TinyFCN
from medwss.train import Context, EngineConfig, fit, register_model_kind
from medwss.train.device import resolve_device


def train_agmm(
    images: Sequence[np.ndarray],
    sparse: Sequence[np.ndarray],
    n_classes: int,
    present: Sequence[np.ndarray] | None = None,
    iterations: int = 200,
    batch_size: int = 4,
    lr: float = 3e-3,
    width: int = 24,
    seed: int = 0,
    loss: AGMMLoss | None = None,
    progress: bool = False,
    model: TinyFCN | None = None,
    device: str = "auto",
    amp: bool = False,
    checkpoint: str | Path | None = None,
) -> tuple[TinyFCN, list[float]]:
    """Train on (C, H, W) images with (H, W) sparse labels (`IGNORE` elsewhere).

    Args:
        model: Network to train (`forward_features`/`forward_head`); a `TinyFCN` of `width` if None.
        device: Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU.
        amp: Mixed precision (CUDA only).
        checkpoint: Checkpoint file, written after every step and resumed from when present (same
            settings and data, else a `ConfigError` names what changed).

    Returns:
        ``(model, history)``: the trained network and, per step, the full AGMM objective (mixture term
        at full weight, whatever the ramp).
    """
    torch.manual_seed(seed)
    dev = resolve_device(device)
    x = torch.from_numpy(np.stack(images).astype(np.float32)).to(dev)
    y = torch.from_numpy(np.stack(sparse).astype(np.int64)).to(dev)
    pres = None if present is None else torch.from_numpy(np.stack(present).astype(bool)).to(dev)
    model = model if model is not None else TinyFCN(x.shape[1], n_classes, width=width)
    crit = loss or AGMMLoss(n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    size = min(batch_size, len(x))

    def step(t: int, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.from_numpy(np.random.default_rng([seed, t]).choice(len(x), size=size, replace=False)).to(dev)
        net = model  # the module the engine trains (ctx.modules["model"]), typed
        feats = net.forward_features(x[idx])  # (B, F, H, W)
        ramp = min(1.0, t / max(1, iterations // 2))  # mixture term ramps up over the first half
        parts = crit(feats.float(), net.forward_head(feats).float(), y[idx], None if pres is None else pres[idx], ramp)
        objective = parts.ce + crit.w_gmm * parts.gmm + crit.w_sep * parts.separation + crit.w_neg * parts.negative
        return parts.total, {"objective": objective}

    ecfg = EngineConfig(epochs=None, max_steps=iterations, restore_best=False, seed=seed, device=str(dev), amp=amp,
                        progress=progress, desc="agmm")  # fmt: skip
    net_config: Any = fcn_config(model) if isinstance(model, TinyFCN) else type(model).__name__
    run = {"trainer": "pseudo_agmm", "n_classes": n_classes, "iterations": iterations, "batch_size": batch_size,
           "lr": lr, "seed": seed, "amp": amp, "network": net_config,
           "loss": {k: getattr(crit, k) for k in ("w_gmm", "w_sep", "w_neg", "margin", "confidence")},
           "data": fingerprint(x, y, pres)}  # fmt: skip
    # one batch per "epoch", a round per step: the history is per step, the batch a function of (seed, step)
    result = fit(model, opt, step, lambda t: [t], ecfg, checkpoint=checkpoint, run_config=run)
    return model.cpu().eval(), [float(r["objective"]) for r in result.history]


register_model_kind("pseudo_agmm", build_fcn)


def save_agmm_model(path: str | Path, model: TinyFCN, meta: dict[str, Any] | None = None) -> Path:
    """Save an AGMM-trained `TinyFCN` as the one model file (kind ``pseudo_agmm``), atomically."""
    from medwss.train import save_model

    return save_model(path, "pseudo_agmm", model, fcn_config(model), meta)


def load_agmm_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[TinyFCN, dict[str, Any]]:
    """A network saved by `save_agmm_model` (eval mode) and its build config plus meta.

    Raises:
        UnsupportedFormatError: The file holds another kind of model.
    """
    from medwss.train import load_model

    net, record = load_model(path, device, kind="pseudo_agmm")
    return net, {**record.meta, **record.config}  # type: ignore[return-value]


@torch.no_grad()
def predict_labels(model: torch.nn.Module, images: Sequence[np.ndarray], confidence: float = 0.0) -> list[np.ndarray]:
    """Argmax labels per image; `IGNORE` (-1) where the top probability is below `confidence`."""
    out = []
    for img in images:
        p = torch.softmax(model(torch.from_numpy(np.asarray(img, np.float32))[None]), dim=1)[0]
        conf, lab = p.max(dim=0)
        lab[conf < confidence] = -1
        out.append(lab.numpy().astype(np.int64))
    return out
