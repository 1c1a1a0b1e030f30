"""Train a small segmenter on sparse labels with the AGMM loss (CPU-sized; any `TinyFCN`-like network)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from medwss.embed.engine import resolve_device
from medwss.pseudo.agmm import AGMMLoss
from medwss.pseudo.nets import TinyFCN


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
) -> tuple[TinyFCN, list[float]]:
    """Train on (C, H, W) images with (H, W) sparse labels (`IGNORE` elsewhere).

    Args:
        model: Network to train (`forward_features`/`forward_head`); a `TinyFCN` of `width` if None.
        device: Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU.

    Returns:
        ``(model, history)``: the trained network and, per step, the full AGMM objective (mixture term
        at full weight, whatever the ramp).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    x = torch.from_numpy(np.stack(images).astype(np.float32)).to(dev)
    y = torch.from_numpy(np.stack(sparse).astype(np.int64)).to(dev)
    pres = None if present is None else torch.from_numpy(np.stack(present).astype(bool)).to(dev)
    model = (model if model is not None else TinyFCN(x.shape[1], n_classes, width=width)).to(dev)
    crit = loss or AGMMLoss(n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    for step in tqdm(range(iterations), desc="agmm", disable=not progress):
        idx = torch.from_numpy(rng.choice(len(x), size=min(batch_size, len(x)), replace=False))
        feats = model.forward_features(x[idx])  # (B, F, H, W)
        ramp = min(1.0, step / max(1, iterations // 2))  # mixture term ramps up over the first half
        parts = crit(feats, model.forward_head(feats), y[idx], None if pres is None else pres[idx], ramp)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        history.append(parts.ce + crit.w_gmm * parts.gmm + crit.w_sep * parts.separation + crit.w_neg * parts.negative)
    return model.cpu().eval(), history


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
