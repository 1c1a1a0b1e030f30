"""DuPL: two students teach each other, with a dynamic threshold and a loss-GMM noise filter.

Each student (a small segmenter) is trained on pseudo-labels made by the *other* one: the peer's
confident predictions (top probability ≥ a threshold that decays along a cosine from
`tau_start` to `tau_end`), falling back on the initial pseudo-labels where the peer abstains.
A two-component Gaussian mixture on the per-pixel losses (fitted per class, after warm-up)
separates clean from noisy labels; noisy (discarded) pixels are not supervised but get a
consistency loss between the student's predictions on a weak and a strong view (the MONAI
pipeline `PRESETS["strong_intensity"]`, run on the device). A discrepancy loss keeps the students'
features apart so they do not collapse into one. The initial pseudo-labels remain an anchor term (loss-filtered as
well), the role DuPL's image-label-trained CAM branch plays: without it, confident background
predictions of the peer erase small organs. Strong augmentation is medically safe: intensity changes only
(gamma, contrast, noise, blur), no flips (left and right organs differ) and no warps.

Training runs on the one engine (`medwss.train.fit`, two models and two optimisers): on the
configured device, seeded, resumable from a checkpoint with the same final students; the pair is
saved as the one model file (kind ``pseudo_dupl``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.config import StrictConfig
from medwss.data.labels import IGNORE
from medwss.pseudo.cams import build_fcn, fcn_config, fingerprint, step_seed
from medwss.pseudo.nets import TinyFCN, class_weights
from medwss.train import Context, EngineConfig, fit, register_model_kind
from medwss.train.device import resolve_device
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


class DuPLConfig(StrictConfig):
    """Dual-student training settings."""

    iterations: int = 200
    batch_size: int = 4
    lr: float = 3e-3
    width: int = 16
    tau_start: float = 0.95
    tau_end: float = 0.7
    warmup: int = 50
    w_discrepancy: float = 0.1
    w_consistency: float = 0.5
    w_anchor: float = 1.0
    gmm_filter: bool = True
    seed: int = 0
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the students are returned on the CPU."""
    amp: bool = False
    """Mixed precision (CUDA only; losses are computed in float32)."""


def dynamic_threshold(step: int, total: int, tau_start: float = 0.95, tau_end: float = 0.7) -> float:
    """Cosine decay from `tau_start` (step 0) to `tau_end` (step `total`)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return tau_end + (tau_start - tau_end) * 0.5 * (1.0 + math.cos(math.pi * t))


def _gmm_1d(x: np.ndarray, n_iter: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-component 1D Gaussian mixture by EM: (means, standard deviations, (N, 2) posteriors)."""
    mu = np.percentile(x, [10.0, 90.0])
    sd = np.full(2, max(float(x.std()), 1e-3))
    w = np.full(2, 0.5)
    for _ in range(n_iter):
        logp = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        logp -= logp.max(axis=1, keepdims=True)
        post = np.exp(logp)
        post /= post.sum(axis=1, keepdims=True)
        nk = post.sum(axis=0) + 1e-9
        w = nk / nk.sum()
        mu = (post * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt((post * (x[:, None] - mu) ** 2).sum(axis=0) / nk) + 1e-4
    return mu, sd, post


def gmm_clean_mask(losses: np.ndarray, separation: float = 2.0) -> np.ndarray:
    """True for pixels in the low-loss component of a two-component GMM on per-pixel losses.

    A two-component mixture splits any distribution; the split is used only when the components
    are apart: ``mean_high - mean_low > separation * (sd_low + sd_high)``. Otherwise all are clean.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.shape[0] < 4 or np.ptp(x) < 1e-6:
        return np.ones(x.shape[0], dtype=bool)
    mu, sd, post = _gmm_1d(x)
    lo, hi = int(np.argmin(mu)), int(np.argmax(mu))
    if lo == hi or mu[hi] - mu[lo] <= separation * (sd[lo] + sd[hi]):
        return np.ones(x.shape[0], dtype=bool)
    return post[:, lo] > 0.5


def discrepancy_loss(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel cosine similarity of the two students' features, mapped to [0, 1] (minimised)."""
    return ((F.cosine_similarity(fa, fb, dim=1) + 1.0) / 2.0).mean()


def _peer_targets(peer_logits: torch.Tensor, initial: torch.Tensor, tau: float, warm: bool) -> torch.Tensor:
    """Pseudo-labels from the peer's confident predictions, the initial labels where it abstains."""
    if not warm:
        return initial
    conf, lab = torch.softmax(peer_logits.detach(), dim=1).max(dim=1)
    return torch.where(conf >= tau, lab, initial)


def _student_loss(
    logits: torch.Tensor, strong_logits: torch.Tensor, target: torch.Tensor, cfg: DuPLConfig, warm: bool
) -> tuple[torch.Tensor, float]:
    """CE on clean labelled pixels + consistency on discarded ones; returns (loss, share discarded).

    The loss filter starts after warm-up: at initialisation low loss only means "agrees with the
    random network", and filtering then collapses training onto one class.
    """
    pix = F.cross_entropy(logits, target.clamp_min(0), reduction="none")  # (B, H, W)
    lab = target != IGNORE
    clean = lab.clone()
    if cfg.gmm_filter and warm and lab.sum() > 8:  # before warm-up every loss is noise: filter nothing
        for c in target[lab].unique().tolist():  # per class: a hard minor class is not discarded wholesale
            sel = target == c
            if sel.sum() > 8:
                clean[sel] = torch.from_numpy(gmm_clean_mask(pix[sel].detach().cpu().numpy())).to(clean.device)
    w = class_weights(target, logits.shape[1]).to(logits.device)[target.clamp_min(0)]  # (B, H, W) class-balanced
    ce = (pix * w)[clean].sum() / w[clean].sum() if clean.any() else logits.sum() * 0.0
    discarded = ~clean
    cons = logits.sum() * 0.0
    if discarded.any():
        weak = logits.detach().argmax(dim=1)
        cons = F.cross_entropy(strong_logits, weak, reduction="none")[discarded].mean()
    share = float((lab & ~clean).sum()) / max(int(lab.sum()), 1)
    return ce + cfg.w_consistency * cons, share


class StudentPair(nn.Module):
    """The two students as one module (what the ``pseudo_dupl`` model file holds); calls give the mean probabilities."""

    def __init__(self, a: TinyFCN, b: TinyFCN) -> None:
        super().__init__()
        self.a, self.b = a, b

    @property
    def students(self) -> tuple[TinyFCN, TinyFCN]:
        return self.a, self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(self.a(x), 1) + torch.softmax(self.b(x), 1)) / 2  # (B, K, H, W)


def train_dupl(
    images: Sequence[np.ndarray],
    initial: Sequence[np.ndarray],
    n_classes: int,
    cfg: DuPLConfig,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> tuple[tuple[TinyFCN, TinyFCN], list[dict[str, float]]]:
    """Train two students on (C, H, W) images with initial (H, W) pseudo-labels (`IGNORE` allowed).

    Runs on the one engine (`medwss.train.fit`) with the students ``a`` and ``b`` and an Adam
    optimiser each (one optimiser step per round); each step's batch and strong view are functions
    of (seed, step), so a run resumed from `checkpoint` (written after every step; same settings and
    data, else a `ConfigError` names what changed) ends with the same students.

    Returns:
        ``((student_a, student_b), history)``; history has per step the loss, threshold and the
        share of labelled pixels the GMM filter discarded.
    """
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    x = torch.from_numpy(np.stack(images).astype(np.float32)).to(device)
    y0 = torch.from_numpy(np.stack(initial).astype(np.int64)).to(device)
    a = TinyFCN(x.shape[1], n_classes, width=cfg.width)
    torch.manual_seed(cfg.seed + 1)
    b = TinyFCN(x.shape[1], n_classes, width=cfg.width)
    strong = augment_pipeline(PRESETS["strong_intensity"], label_keys=(), mask_keys=())
    opts = {"a": torch.optim.Adam(a.parameters(), lr=cfg.lr), "b": torch.optim.Adam(b.parameters(), lr=cfg.lr)}
    size = min(cfg.batch_size, len(x))

    def step(t: int, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        sa_net, sb_net = a, b  # the modules the engine trains (ctx.modules["a"], ["b"]), typed
        idx = torch.from_numpy(np.random.default_rng([cfg.seed, t]).choice(len(x), size=size, replace=False))
        xw = x[idx.to(device)]  # (B, C, H, W) on the device
        xs = augment_batch(strong, {"image": xw}, seed=step_seed(cfg.seed, t))["image"]  # the strong view
        fa, fb = sa_net.forward_features(xw), sb_net.forward_features(xw)  # (B, F, H, W)
        la, lb = sa_net.forward_head(fa).float(), sb_net.forward_head(fb).float()  # (B, K, H, W)
        tau = dynamic_threshold(t, cfg.iterations, cfg.tau_start, cfg.tau_end)
        warm = t >= cfg.warmup
        sa, sb = sa_net(xs).float(), sb_net(xs).float()  # strong views
        y = y0[idx.to(device)]
        loss_a, drop_a = _student_loss(la, sa, _peer_targets(lb, y, tau, warm), cfg, warm)
        loss_b, drop_b = _student_loss(lb, sb, _peer_targets(la, y, tau, warm), cfg, warm)
        loss = loss_a + loss_b + cfg.w_discrepancy * discrepancy_loss(fa.float(), fb.float())
        if warm and cfg.w_anchor > 0:  # the initial labels stay an anchor (filtered too), as DuPL's CAM branch is
            loss = loss + cfg.w_anchor * (
                _student_loss(la, sa, y, cfg, warm)[0] + _student_loss(lb, sb, y, cfg, warm)[0]
            )
        return loss, {"tau": tau, "discarded": (drop_a + drop_b) / 2}

    ecfg = EngineConfig(epochs=None, max_steps=cfg.iterations, restore_best=False, seed=cfg.seed, device=str(device),
                        amp=cfg.amp, progress=progress, desc="dupl")  # fmt: skip
    run = {"trainer": "pseudo_dupl", "n_classes": n_classes, **cfg.model_dump(mode="json"), "data": fingerprint(x, y0)}
    # one batch per "epoch", a round per step: the history is per step, the batch a function of (seed, step)
    result = fit({"a": a, "b": b}, opts, step, lambda t: [t], ecfg, checkpoint=checkpoint, run_config=run)
    history = [{"loss": r["train_loss"], "tau": r["tau"], "discarded": r["discarded"]} for r in result.history]
    return (a.cpu().eval(), b.cpu().eval()), history


def _build_pair(config: dict[str, Any]) -> StudentPair:
    return StudentPair(build_fcn(config["a"]), build_fcn(config["b"]))


register_model_kind("pseudo_dupl", _build_pair)


def save_students(path: str | Path, students: tuple[TinyFCN, TinyFCN], meta: dict[str, Any] | None = None) -> Path:
    """Save both students as the one model file (kind ``pseudo_dupl``, a `StudentPair`), atomically."""
    from medwss.train import save_model

    a, b = students
    return save_model(path, "pseudo_dupl", StudentPair(a, b), {"a": fcn_config(a), "b": fcn_config(b)}, meta)


def load_students(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[tuple[TinyFCN, TinyFCN], dict[str, Any]]:
    """The students saved by `save_students` (eval mode) and the file's config plus meta.

    Raises:
        UnsupportedFormatError: The file holds another kind of model.
    """
    from medwss.train import load_model

    pair, record = load_model(path, device, kind="pseudo_dupl")
    return pair.students, {**record.meta, **record.config}  # type: ignore[union-attr,return-value]


@torch.no_grad()
def dupl_labels(
    students: tuple[torch.nn.Module, torch.nn.Module], images: Sequence[np.ndarray], confidence: float = 0.7
) -> list[np.ndarray]:
    """Pseudo-labels from the mean of both students' probabilities; `IGNORE` below `confidence`."""
    out = []
    for img in images:
        t = torch.from_numpy(np.asarray(img, np.float32))[None]
        p = (torch.softmax(students[0](t), 1) + torch.softmax(students[1](t), 1))[0] / 2
        conf, lab = p.max(dim=0)
        lab[conf < confidence] = IGNORE
        out.append(lab.numpy().astype(np.int64))
    return out
