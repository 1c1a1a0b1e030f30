"""The extraction engine: tiles → batches (read and decoded in background threads) → encoder → bags.

Reading overlaps with compute: a producer thread assembles batch *b+1* (its tiles read in parallel
by `workers` threads; OpenSlide, PIL and numpy release the GIL) while the encoder runs on batch *b*.
On CUDA, batches go through pinned memory, a MONAI transform moves them to the device, and the
forward runs under autocast (mixed precision).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from medwss.embed.config import EmbedConfig
from medwss.embed.reader import TileReader
from medwss.embed.store import FeatureBag

__all__ = ["EmbedConfig", "bag_from_tiles", "embed_tiles", "iter_batches"]


def iter_batches(reader: TileReader, batch_size: int, workers: int, prefetch: int) -> Iterator[np.ndarray]:
    """Batches of tiles, in order, read ahead in background threads.

    Args:
        reader: The case's tile reader.
        batch_size: Tiles per batch.
        workers: Threads reading tiles (0: read in the producer thread itself).
        prefetch: Batches kept ready ahead of the consumer.
    """
    reader.open()  # once, before the threads share it
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        pool = ThreadPoolExecutor(workers) if workers > 0 else None
        try:
            for start in range(0, len(reader), batch_size):
                if stop.is_set():
                    return
                idx = range(start, min(start + batch_size, len(reader)))
                tiles = list(pool.map(reader.read, idx)) if pool else [reader.read(i) for i in idx]
                q.put(np.stack(tiles))
            q.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(exc)
        finally:
            if pool:
                pool.shutdown(wait=False)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host batch → device tensor: through pinned memory and MONAI's `EnsureType` on a GPU, as is on the CPU."""
    tensor = torch.from_numpy(batch)
    if device.type != "cuda":
        return tensor
    from monai.transforms import EnsureType

    return EnsureType(data_type="tensor", device=device, track_meta=False)(tensor.pin_memory())


@torch.inference_mode()
def embed_tiles(
    encoder: Any, reader: TileReader, config: EmbedConfig, device: torch.device, progress: Any = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings (N, C) of a case's tiles, and their token maps (N, C, h, w[, d]) when asked for.

    Args:
        encoder: An `medwss.embed.encoders.Encoder` on `device`, in eval mode.
        reader: The case's tiles.
        config: Batch size, workers, prefetch, token maps, mixed precision.
        device: Where the encoder runs.
        progress: Optional tqdm bar advanced by the number of tiles of each batch.
    """
    feats, toks = [], []
    amp = config.amp and device.type == "cuda"
    for batch in iter_batches(reader, config.batch_size, config.workers, config.prefetch):
        x = _to_device(batch, device)  # (B, C, H, W) or (B, C, H, W, D)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            fmap = encoder.forward_features(x)  # (B, E, h, w[, d])
            pooled = encoder.forward_head(fmap, pre_logits=True)  # (B, E)
        feats.append(pooled.float().cpu().numpy())
        if config.tokens:
            toks.append(fmap.float().cpu().numpy())
        if progress is not None:
            progress.update(len(batch))
    dim = getattr(encoder, "embed_dim", 0)
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    tokens = np.concatenate(toks) if toks else None
    return features, tokens


def bag_from_tiles(reader: TileReader, features: np.ndarray, tokens: np.ndarray | None, encoder) -> FeatureBag:  # noqa: ANN001
    """A `FeatureBag` with the tile set's geometry and the encoder's identity as attributes."""
    t = reader.tiles
    attrs = {
        "case_id": t.case_id,
        "source": t.source,
        "kind": t.kind,
        "encoder": getattr(encoder, "name", type(encoder).__name__),
        "weights_checksum": getattr(encoder, "weights_checksum", None) or "",
        "tile_size": list(t.tile_size),
        "grid_shape": list(t.grid_shape),
        "mpp": t.mpp,
        "level": t.level,
        "span": t.span,
        "spacing": list(t.spacing) if t.spacing else None,
    }
    return FeatureBag(features, t.coords, tokens, t.grid_index, attrs)
