"""COIN training: the generator removes what makes the frozen classifier say "abnormal".

Per iteration, a batch of slices the classifier calls abnormal (``xa``) and one it calls normal
(``xn``); ``x_cf = G(xa, 1)``. Discriminator (``d_steps`` updates): real normal → 1 as "normal", real
abnormal → 1 as "abnormal", ``x_cf`` → 0 as "normal". Generator (``g_steps`` updates)::

    λ_adv · LSGAN(D(x_cf, normal)) + λ_kl · KL(normal ‖ f(x_cf)) + λ_rec · |x_cf − xa|
    + λ_cyc · (|G(x_cf, 1) − x_cf| + |G(xn, 1) − xn|) + λ_tv · TV(|xa − x_cf|)

The cycle term asks that removing the tumour again from a counterfactual, or from a real normal
slice, changes nothing: the generator may only alter what the classifier objects to.

Training runs on the one engine (`medwss.train.fit`) as phases per iteration (``d_steps``
discriminator updates, then ``g_steps`` generator updates), seeded, on the configured device
(autocast on CUDA with ``amp``), in rounds of ``eval_every`` iterations: a history row and an
atomic checkpoint each round, from which an interrupted run resumes with the same final weights
(more ``iterations`` continue a finished run). The generator is saved as the one model file (kind
``coin_generator``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medwss.counterfactual import losses
from medwss.counterfactual.config import CoinConfig
from medwss.counterfactual.discriminator import PatchDiscriminator
from medwss.counterfactual.generator import CounterfactualGenerator
from medwss.errors import InvalidDataError
from medwss.train import Context, EngineConfig, fit, register_model_kind, resolve_device
from medwss.train import load_model as load_any_model
from medwss.train import save_model as save_any_model
from medwss.train.device import seed_everything
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline

KIND = "coin_generator"
"""Model-file kind of the counterfactual generator."""
RUN_ONLY = ("iterations",)
"""CoinConfig keys a resumed run may change (besides `medwss.train.RUN_ONLY`): more iterations continue it."""


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
    classifier: nn.Module,
    images: np.ndarray,
    cfg: CoinConfig,
    progress: bool = True,
    labels: np.ndarray | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[CounterfactualGenerator, list[dict[str, float]]]:
    """Train generator and discriminator on slices (N, 1, S, S); returns the generator and a loss history.

    The pools of abnormal and normal slices follow the classifier's decisions; `labels` (N,) are
    only a fallback when the classifier puts (almost) every slice on one side. The batches of each
    iteration are drawn from a generator seeded by (seed, iteration, update), so with a
    `checkpoint` (written every `eval_every` iterations, resumed from when present) an interrupted
    run ends with the same weights as an uninterrupted one. History rows: ``iteration`` (the
    round's last, 0-based), ``d``, ``adv``, ``kl``, ``rec``, ``cyc``, ``tv`` (round means) and the
    engine's ``round``, ``step``, ``train_loss``, ``loss_discriminator``, ``loss_generator``, ``lr``, ``seconds``.
    """
    for p in classifier.parameters():
        p.requires_grad_(False)
    classifier.eval()
    xa_pool, xn_pool = _pools(classifier, images, cfg.decision_threshold, labels)
    device = resolve_device(cfg.device)
    xa_pool, xn_pool, classifier = xa_pool.to(device), xn_pool.to(device), classifier.to(device)
    seed_everything(cfg.seed)
    G = CounterfactualGenerator(
        cfg.gen_channels, (2,) * (len(cfg.gen_channels) - 1), cfg.gen_res_units, cfg.smooth_sigma
    )
    D = PatchDiscriminator(cfg.disc_channels)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=cfg.betas)
    ones, zeros = torch.ones(cfg.batch_size, device=device), torch.zeros(cfg.batch_size, device=device)
    flips = augment_pipeline(PRESETS["lr_flip"], label_keys=(), mask_keys=())

    def batches(it: int, update: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(xa, xn), each (B, 1, H, W) on the device with random left-right flips: a function of (seed, it, update)."""
        rng = np.random.default_rng([cfg.seed, it, update])
        out = []
        for pool in (xa_pool, xn_pool):
            idx = torch.from_numpy(rng.integers(len(pool), size=cfg.batch_size)).to(pool.device)
            out.append(augment_batch(flips, {"image": pool[idx]}, seed=rng)["image"])
        return out[0], out[1]

    def d_phase(update: int):  # noqa: ANN202
        def step(it: int, ctx: Context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            g, d = ctx.models["generator"], ctx.models["discriminator"]
            xa, xn = batches(it, update)
            with torch.no_grad():
                fake = g(xa, ones)
            real_out = torch.cat([d(xn, zeros), d(xa, ones)])
            loss_d = losses.lsgan_discriminator(real_out.float(), d(fake, zeros).float())
            return loss_d, {"d": loss_d.detach()}

        return step

    def g_phase(update: int):  # noqa: ANN202
        def step(it: int, ctx: Context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            g, d = ctx.models["generator"], ctx.models["discriminator"]
            xa, xn = batches(it, update)
            x_cf = g(xa, ones)  # (B, 1, H, W)
            adv = losses.lsgan_generator(d(x_cf, zeros).float())
            kl = losses.kl_flip(classifier(x_cf).float(), 0)
            x_cf, xa, xn = x_cf.float(), xa.float(), xn.float()
            rec = losses.l1(x_cf, xa)
            cyc = losses.l1(g(x_cf, ones).float(), x_cf) + losses.l1(g(xn, ones).float(), xn)
            tv = losses.total_variation((xa - x_cf).abs())
            loss_g = (
                cfg.lambda_adv * adv
                + cfg.lambda_kl * kl
                + cfg.lambda_rec * rec
                + cfg.lambda_cyc * cyc
                + cfg.lambda_tv * tv
            )
            terms = {"adv": adv, "kl": kl, "rec": rec, "cyc": cyc, "tv": tv}
            return loss_g, {k: v.detach() for k, v in terms.items()}

        return step

    phases = [("discriminator", d_phase(k)) for k in range(cfg.d_steps)]
    phases += [("generator", g_phase(cfg.d_steps + k)) for k in range(cfg.g_steps)]
    engine = EngineConfig(
        epochs=None, max_steps=cfg.iterations, eval_every=cfg.eval_every, restore_best=False, seed=cfg.seed,
        device=str(device), amp=cfg.amp, progress=progress, desc="coin",
    )  # fmt: skip
    try:
        result = fit(
            {"generator": G, "discriminator": D}, {"generator": opt_g, "discriminator": opt_d}, phases,
            lambda epoch: range(epoch * cfg.iterations, (epoch + 1) * cfg.iterations), engine,
            checkpoint=checkpoint, run_only=RUN_ONLY,
            run_config={**cfg.model_dump(mode="json"), "n_abnormal": len(xa_pool), "n_normal": len(xn_pool)},
        )  # fmt: skip
    finally:
        classifier.cpu()
    history = [{"iteration": int(r["step"]) - 1, **r} for r in result.history]
    return G.cpu().eval(), history


@torch.no_grad()
@torch.no_grad()
def counterfactuals(
    G: CounterfactualGenerator,
    images: np.ndarray,
    decisions: np.ndarray,
    batch_size: int = 64,
    roi_size: tuple[int, int] | None = None,
    overlap: float = 0.25,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """``x_cf`` (N, 1, H, W) for slices (N, 1, H, W) under binarised decisions (N,).

    Through the one sliding-window function (`medwss.seg.inference.sliding_window`): windows of
    `roi_size` (the generator's training slice size; None: the whole slice, one window), Gaussian
    blending, `batch_size` windows per call on `device` (default: the generator's), the slices and
    the result on the host. A slice of the training size is one window: ``G(x, c)`` exactly.
    """
    from medwss.seg.inference import resolve_roi, sliding_window

    G.eval()
    if len(images) == 0:
        return np.zeros_like(images)
    dev = torch.device(device) if device is not None else next(G.parameters()).device
    G.to(dev)
    x = torch.from_numpy(np.asarray(images, np.float32))
    c = torch.from_numpy(np.asarray(decisions)).float()

    def predict(windows: torch.Tensor, where: list) -> torch.Tensor:
        idx = torch.tensor([int(w[0].start) for w in where])  # each window's slice (batch index)
        return G(windows, c[idx].to(dev))

    roi = resolve_roi(roi_size, x.shape[2:])
    out = sliding_window(predict, x, roi, overlap, sw_device=dev, sw_batch_size=batch_size, with_coord=True)
    return out.numpy()


def _build(config: dict[str, Any]) -> CounterfactualGenerator:
    return CounterfactualGenerator(
        tuple(config["channels"]),
        tuple(config["strides"]),
        int(config["num_res_units"]),
        float(config.get("smooth_sigma", 0.0)),
    )


register_model_kind(KIND, _build)


def save_generator(G: CounterfactualGenerator, cfg: CoinConfig, path: str | Path) -> Path:
    """Save the generator as the one model file (kind ``coin_generator``; training settings in meta)."""
    return save_any_model(path, KIND, G, G.settings(), {"train_config": cfg.model_dump(mode="json")})


def load_generator(path: str | Path) -> CounterfactualGenerator:
    """Load a generator (a model file, or the older COIN generator format), in eval mode.

    Raises:
        UnsupportedFormatError: The file holds another kind of model (or no model).
        CorruptFileError: The file cannot be read or its weights do not fit.
    """
    G, _ = load_any_model(path, kind=KIND)
    return G  # type: ignore[return-value]
