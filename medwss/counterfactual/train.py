"""COIN training: the generator removes what makes the frozen classifier say "abnormal".

Per iteration, a batch of slices the classifier calls abnormal (``xa``) and one it calls normal
(``xn``); ``x_cf = G(xa, 1)``. Discriminator (``d_steps`` updates): real normal → 1 as "normal", real
abnormal → 1 as "abnormal", ``x_cf`` → 0 as "normal". Generator (``g_steps`` updates)::

    λ_adv · LSGAN(D(x_cf, normal)) + λ_kl · KL(normal ‖ f(x_cf)) + λ_rec · |x_cf − xa|
    + λ_cyc · (|G(x_cf, 1) − x_cf| + |G(xn, 1) − xn|) + λ_tv · TV(|xa − x_cf|)

The cycle term asks that removing the tumour again from a counterfactual, or from a real normal
slice, changes nothing: the generator may only alter what the classifier objects to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from medwss.config import StrictConfig
from medwss.counterfactual import losses
from medwss.counterfactual.discriminator import PatchDiscriminator
from medwss.counterfactual.generator import CounterfactualGenerator
from medwss.embed.engine import resolve_device
from medwss.errors import InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


class CoinConfig(StrictConfig):
    """COIN settings (configs/coin.yaml); paper: λ_adv 1, λ_kl 1–5, λ_rec 1, λ_tv 5e-5–0.05, Adam 2e-4, betas (0, 0.999)."""

    iterations: int = 500
    batch_size: int = 16
    lr: float = 5e-4
    betas: tuple[float, float] = (0.0, 0.999)
    lambda_adv: float = 1.0
    lambda_kl: float = 2.0
    lambda_rec: float = 100.0
    lambda_cyc: float = 5.0
    lambda_tv: float = 1.0
    d_steps: int = 1
    g_steps: int = 1
    decision_threshold: float = 0.5
    gen_channels: tuple[int, ...] = (8, 16, 32, 64)
    gen_res_units: int = 1
    smooth_sigma: float = 1.0
    disc_channels: tuple[int, ...] = (16, 32, 64)
    seed: int = 0
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the generator is returned on the CPU."""


def _pools(
    classifier: nn.Module, images: np.ndarray, threshold: float, labels: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices the classifier calls abnormal and normal; the slice labels stand in when one side is nearly empty."""
    import warnings

    from medwss.counterfactual.classifier import predict_proba

    p = predict_proba(classifier, images)
    x = torch.from_numpy(images).float()
    decided = torch.from_numpy(p >= threshold)
    if labels is not None and min(int(decided.sum()), int((~decided).sum())) < 2:
        warnings.warn("classifier decisions are one-sided; using the slice labels to form the pools", stacklevel=3)
        decided = torch.from_numpy(np.asarray(labels) > 0)
    ab, no = x[decided], x[~decided]
    if len(ab) < 2 or len(no) < 2:
        raise InvalidDataError(f"the classifier calls {len(ab)} slice(s) abnormal and {len(no)} normal; need both")
    return ab, no


def train_coin(
    classifier: nn.Module, images: np.ndarray, cfg: CoinConfig, progress: bool = True, labels: np.ndarray | None = None
) -> tuple[CounterfactualGenerator, list[dict[str, float]]]:
    """Train generator and discriminator on slices (N, 1, S, S); returns the generator and a loss history.

    The pools of abnormal and normal slices follow the classifier's decisions; `labels` (N,) are
    only a fallback when the classifier puts (almost) every slice on one side.
    """
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    for p in classifier.parameters():
        p.requires_grad_(False)
    classifier.eval()
    xa_pool, xn_pool = _pools(classifier, images, cfg.decision_threshold, labels)
    device = resolve_device(cfg.device)
    xa_pool, xn_pool, classifier = xa_pool.to(device), xn_pool.to(device), classifier.to(device)
    G = CounterfactualGenerator(
        cfg.gen_channels, (2,) * (len(cfg.gen_channels) - 1), cfg.gen_res_units, cfg.smooth_sigma
    ).to(device)
    D = PatchDiscriminator(cfg.disc_channels).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=cfg.betas)
    ones, zeros = torch.ones(cfg.batch_size, device=device), torch.zeros(cfg.batch_size, device=device)
    flips = augment_pipeline(PRESETS["lr_flip"], label_keys=(), mask_keys=())
    history: list[dict[str, float]] = []

    def batch(pool: torch.Tensor) -> torch.Tensor:
        x = pool[torch.randint(len(pool), (cfg.batch_size,), generator=gen)]  # (B, 1, H, W) on the device
        return augment_batch(flips, {"image": x}, seed=gen)["image"]  # random left-right flips

    bar = tqdm(range(cfg.iterations), desc="coin", disable=not progress, leave=False)
    for it in bar:
        for _ in range(cfg.d_steps):
            xa, xn = batch(xa_pool), batch(xn_pool)
            with torch.no_grad():
                fake = G(xa, ones)
            real_out = torch.cat([D(xn, zeros), D(xa, ones)])
            loss_d = losses.lsgan_discriminator(real_out, D(fake, zeros))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        for _ in range(cfg.g_steps):
            xa, xn = batch(xa_pool), batch(xn_pool)
            x_cf = G(xa, ones)  # (B, 1, H, W)
            adv = losses.lsgan_generator(D(x_cf, zeros))
            kl = losses.kl_flip(classifier(x_cf), 0)
            rec = losses.l1(x_cf, xa)
            cyc = losses.l1(G(x_cf, ones), x_cf) + losses.l1(G(xn, ones), xn)
            tv = losses.total_variation((xa - x_cf).abs())
            loss_g = (
                cfg.lambda_adv * adv
                + cfg.lambda_kl * kl
                + cfg.lambda_rec * rec
                + cfg.lambda_cyc * cyc
                + cfg.lambda_tv * tv
            )
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        if it % 25 == 0 or it == cfg.iterations - 1:
            rec_row = {
                "iteration": it,
                **{
                    k: v.item()
                    for k, v in (("d", loss_d), ("adv", adv), ("kl", kl), ("rec", rec), ("cyc", cyc), ("tv", tv))
                },
            }
            history.append(rec_row)
            bar.set_postfix(kl=f"{kl.item():.2f}", rec=f"{rec.item():.3f}")
    classifier.cpu()
    return G.cpu().eval(), history


@torch.no_grad()
def counterfactuals(
    G: CounterfactualGenerator, images: np.ndarray, decisions: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """``x_cf`` (N, 1, S, S) for slices (N, 1, S, S) under binarised decisions (N,)."""
    G.eval()
    x, c = torch.from_numpy(images).float(), torch.from_numpy(np.asarray(decisions)).float()
    out = [G(x[i : i + batch_size], c[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros_like(images)


def save_generator(G: CounterfactualGenerator, cfg: CoinConfig, path: str | Path) -> Path:
    """Save generator weights with its settings (plain types)."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": G.state_dict(), "settings": G.settings(), "config": cfg.model_dump(mode="json")}, tmp)
    return Path(path)


def load_generator(path: str | Path) -> CounterfactualGenerator:
    """Load a generator written by `save_generator` (eval mode)."""
    blob = torch.load(require_file(path), map_location="cpu", weights_only=True)
    s = blob["settings"]
    G = CounterfactualGenerator(
        tuple(s["channels"]), tuple(s["strides"]), int(s["num_res_units"]), float(s.get("smooth_sigma", 0.0))
    )
    G.load_state_dict(blob["state_dict"])
    return G.eval()
