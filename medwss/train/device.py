"""The device of a run, chosen once (``auto`` is this rank's GPU when there is one, else the CPU), and its seeding.

Both live here, below every workflow: every trainer, the engine and the extraction engine import them.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The `torch.device` a run uses.

    Args:
        name: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ... or a device.
        local_rank: This process's rank on its node (torchrun's ``LOCAL_RANK``): the GPU ``auto`` picks.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and MONAI, so that a run with the same seed starts from the same weights.

    MONAI's `set_determinism` also makes cuDNN pick deterministic kernels. Augmentation pipelines are
    seeded by their callers (`set_random_state`, or `augment_batch(..., seed=)`) from the run's seed.
    """
    import random

    import numpy as np
    import torch
    from monai.utils import set_determinism

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_determinism(seed)
