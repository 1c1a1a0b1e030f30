"""The device of a run, chosen once: ``auto`` is this rank's GPU when there is one, else the CPU."""

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
