"""What a step or validation function sees: the models, the device, where the run is, mixed precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from medwss.train.distributed import RankInfo


@dataclass
class Context:
    """The run as seen from inside a step.

    Attributes:
        device: Where the models and batches live.
        models: The models by name, wrapped in DDP under torchrun (call these in a step).
        modules: The same models unwrapped (their state dicts, attributes).
        rank: This process's place in the job.
        amp: Whether autocast is on (CUDA and ``amp: true``).
        amp_dtype: Autocast's dtype.
        epoch: Epoch in progress (0-based).
        step: Optimiser steps done so far.
        batch_index: Batch number within the epoch.
    """

    device: torch.device
    models: dict[str, nn.Module]
    modules: dict[str, nn.Module]
    rank: RankInfo
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    epoch: int = 0
    step: int = 0
    batch_index: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The only model (or the one named ``model``)."""
        if "model" in self.models:
            return self.models["model"]
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        raise KeyError(f"several models ({', '.join(self.models)}): use ctx.models[name]")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast as the engine uses it around steps (for validation functions that want it too)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            yield
