"""In-domain self-supervised pretraining of an encoder: SimCLR / SupCon on the library's own tiles.

`pretrain` trains an `Encoder` plus a small projection head with NT-Xent on two augmented views of
each tile, AdamW with a cosine schedule, seeded, on the one engine (`medwss.train.fit`: device,
mixed precision on CUDA, progress, resume). With ``config.out`` set it checkpoints every epoch to
``out + ".ckpt"`` (resumed from with the same final weights; a `ConfigError` names changed
settings), then writes the encoder as the one model file (kind ``encoder``) to ``out`` (loadable
with ``create_encoder(name, weights=out)`` or `medwss.train.load_model`), and ``run.json`` and
``history.json`` beside it.
`TileDataset` serves the tiles of a manifest's cases (``<case_id>.tiles.h5`` from ``medwss tile``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medwss.embed.encoders.base import Encoder
from medwss.embed.pretrain.augment import Augment
from medwss.embed.pretrain.config import PretrainConfig
from medwss.embed.pretrain.ntxent import get_positives, nt_xent
from medwss.errors import ConfigError
from medwss.train import EngineConfig, fit, register_model_kind, resolve_device
from medwss.train.device import seed_everything

log = logging.getLogger(__name__)

IGNORED_ON_RESUME = ("epochs", "device", "num_workers", "out")
"""Config fields that may change between a checkpoint and the run resuming from it."""


class ProjectionHead(nn.Module):
    """SimCLR's MLP projection: Linear → BatchNorm → ReLU → Linear.

    Args:
        in_dim: Encoder embedding size.
        hidden: Hidden width.
        out_dim: Projection size (the space the loss is computed in).
    """

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, in_dim) -> (N, out_dim)


class _Indexed(torch.utils.data.Dataset):
    """Yields ``(tile, index)`` so the trainer can look up each tile's group."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.as_tensor(self.data[i], dtype=torch.float32), i


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def pretrain(
    encoder: Encoder,
    dataset: Any,
    config: PretrainConfig,
    groups: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Contrastive pretraining of `encoder` on `dataset`.

    Args:
        encoder: The encoder to train (its weights are updated in place).
        dataset: Tiles in [0, 1], ``(C, *S)`` each: a tensor ``(N, C, *S)``, a list, or any map-style dataset.
        config: Hyper-parameters, seed and output path.
        groups: ``(N,)`` group id of each tile (volume or patient), needed for ``positives: group``.
        progress: Show a progress bar.

    Returns:
        ``{"history": [{"epoch", "loss", "lr", "seconds"}, ...], "out": path or None,
        "weights_checksum": sha256 of the saved weights or None, "tiles": N}``.

    Raises:
        ConfigError: Fewer than 2 tiles, group positives without groups, or a checkpoint from another setup.
    """

    n = len(dataset)
    if n < 2:
        raise ConfigError(f"pretraining needs at least 2 tiles, got {n}")
    if config.positives == "group" and groups is None:
        raise ConfigError("positives: group needs the group of every tile (patient or volume)")
    group_ids = torch.arange(n) if groups is None else torch.as_tensor(np.asarray(groups), dtype=torch.long)
    if len(group_ids) != n:
        raise ConfigError(f"groups has {len(group_ids)} entries for {n} tiles")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    head = ProjectionHead(encoder.embed_dim, config.projection_hidden, config.projection_dim)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, total, warmup))
    positives = get_positives(config.positives)
    augment = Augment(
        config.augment, encoder.spatial_dims, stain=encoder.in_channels == 3 and encoder.spatial_dims == 2
    )
    ckpt = Path(config.out + ".ckpt") if config.out else None
    loader_kw: dict[str, Any] = {"batch_size": batch, "drop_last": True, "num_workers": config.num_workers}

    def data(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Generator]]:
        """The epoch's batches; order and augmentations come from one generator seeded by (seed, epoch)."""
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(_Indexed(dataset), shuffle=True, generator=g, **loader_kw)
        for x, idx in loader:
            yield x, idx, g

    def step(b: tuple[torch.Tensor, torch.Tensor, torch.Generator], ctx: Any) -> torch.Tensor:
        x, idx, g = b
        x = x.to(ctx.device, non_blocking=True)  # (B, C, *S)
        views = torch.cat([augment(x, g), augment(x, g)])  # (2B, C, *S)
        z = ctx.models["head"](ctx.models["encoder"](views))  # (2B, P)
        return nt_xent(z.float(), positives(group_ids[idx].to(ctx.device)), config.temperature)

    engine = EngineConfig(
        epochs=config.epochs, monitor="train_loss", restore_best=False, seed=config.seed, device=str(device),
        amp=config.amp, scheduler_interval="step", progress=progress, desc=f"pretrain {encoder.name}",
    )  # fmt: skip
    res = fit(
        {"encoder": encoder, "head": head}, optimizer, step, data, engine, schedulers=scheduler,
        out_dir=Path(config.out).parent if config.out else None, checkpoint=ckpt,
        run_config=config.model_dump(mode="json"), run_only=IGNORED_ON_RESUME,
    )  # fmt: skip
    history = [{"epoch": r["epoch"] + 1, "loss": r["train_loss"], "lr": r["lr"], "seconds": r["seconds"]}
               for r in res.history]  # fmt: skip
    encoder.eval()
    result: dict[str, Any] = {"history": history, "out": config.out, "weights_checksum": None, "tiles": n}
    if config.out:
        result["weights_checksum"] = save_encoder(encoder, config.out)
        encoder.weights_checksum = result["weights_checksum"]
        _write_record(config, encoder, result)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    return result


def save_encoder(encoder: nn.Module, path: str | Path) -> str:
    """Write the encoder as the one model file (kind ``encoder``), atomically; return the file's sha256.

    The file loads with ``create_encoder(name, weights=path)`` (its state dict is under ``state_dict``)
    and with `medwss.train.load_model`, which rebuilds the encoder from the stored config.
    """
    from medwss.embed.encoders.weights import sha256_file
    from medwss.train import save_model

    config = dict(getattr(encoder, "config", {}) or {})
    save_model(path, "encoder", encoder, config, {"trained_by": "medwss encoder pretrain"})
    return sha256_file(path)


def _build_encoder(config: dict[str, Any]) -> nn.Module:
    from medwss.embed.encoders import create_encoder

    return create_encoder(
        config["name"],
        int(config.get("spatial_dims", 2)),
        int(config.get("in_channels", 3)),
        **config.get("kwargs", {}),
    )


register_model_kind("encoder", _build_encoder)


def _write_record(config: PretrainConfig, encoder: Encoder, result: dict[str, Any]) -> None:
    from medwss.runinfo import write_run_record

    assert config.out is not None
    metrics = {
        "final_loss": result["history"][-1]["loss"] if result["history"] else None,
        "history": result["history"],
        "tiles": result["tiles"],
        "weights": str(config.out),
        "weights_checksum": result["weights_checksum"],
        "encoder": encoder.config,
    }
    write_run_record(Path(config.out).parent, "encoder pretrain", config.model_dump(mode="json"), config.seed, metrics)


class TileDataset(torch.utils.data.Dataset):
    """The tiles of several cases as one dataset of float tensors in [0, 1] (read lazily).

    Args:
        readers: One `TileReader` per case.
        index: ``(N, 2)`` pairs (reader number, tile number).
    """

    def __init__(self, readers: list[Any], index: np.ndarray) -> None:
        self.readers = readers
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        r, t = self.index[i]
        return torch.from_numpy(self.readers[int(r)].read(int(t)))  # (C, *S)


def tile_dataset(
    cases: Sequence[Any],
    tiles_dir: str | Path,
    max_tiles_per_case: int | None = None,
    group_by: str = "patient",
    seed: int = 0,
) -> tuple[TileDataset, np.ndarray, list[str]]:
    """A `TileDataset` over the ``<case_id>.tiles.h5`` files of manifest cases.

    Cases without a tile file, with no tiles, or whose first tile cannot be read are reported
    (logged) and skipped.

    Args:
        cases: Manifest cases (`medwss.data.manifest.Case`).
        tiles_dir: Folder of the tile files.
        max_tiles_per_case: Random subset of each case's tiles (seeded); all when None.
        group_by: ``patient`` or ``case``: what the returned group ids stand for.
        seed: Seed of the subsets.

    Returns:
        The dataset, the ``(N,)`` group id of each tile, and the messages of the skipped cases.

    Raises:
        ConfigError: No case has usable tiles.
    """
    from medwss.embed.reader import TileReader
    from medwss.embed.tiles import load_tiles
    from medwss.errors import MedwssError

    rng = np.random.default_rng(seed)
    readers: list[TileReader] = []
    index: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    skipped: list[str] = []
    group_of: dict[str, int] = {}
    for case in cases:
        path = Path(tiles_dir) / f"{case.case_id}.tiles.h5"
        try:
            tiles = load_tiles(path)
            if len(tiles) == 0:
                raise ConfigError("no tiles", path)
            reader = TileReader(tiles, case.images, case.modality)
            reader.read(0)
        except (MedwssError, OSError, ValueError) as exc:
            skipped.append(f"{case.case_id}: {exc}")
            log.warning("skipping case %s: %s", case.case_id, exc)
            continue
        chosen = np.arange(len(tiles))
        if max_tiles_per_case is not None and len(chosen) > max_tiles_per_case:
            chosen = np.sort(rng.choice(chosen, max_tiles_per_case, replace=False))
        key = case.patient_id if group_by == "patient" else case.case_id
        gid = group_of.setdefault(key, len(group_of))
        index.append(np.stack([np.full(len(chosen), len(readers)), chosen], axis=1))
        groups.append(np.full(len(chosen), gid))
        readers.append(reader)
    if not readers:
        raise ConfigError(f"no case has usable tiles in {tiles_dir} ({len(skipped)} skipped)")
    return TileDataset(readers, np.concatenate(index)), np.concatenate(groups), skipped
