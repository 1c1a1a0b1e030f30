"""How the engine trains: length, selection, early stopping, precision, accumulation, checkpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medwss.config import StrictConfig


class EngineConfig(StrictConfig):
    """Settings of `medwss.train.fit` (workflows build one from their own configs).

    A *round* is one epoch, or `eval_every` optimiser steps when that is set: validation, model
    selection, early stopping, the history row and the checkpoint all happen at the end of a round.

    Early stopping (the plateau rule): patience only counts once the model has left its starting
    plateau, i.e. once a round's mean training loss has fallen below ``(1 - plateau_tol)`` times
    the first round's. A model still at its initial loss (INSIGHT at 0.69 for its first epochs) is
    never stopped; it trains on until it learns or `epochs` run out.
    """

    epochs: int | None = Field(10, ge=1)
    """Passes over the data; None: run `max_steps` steps (the data is cycled)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimiser steps (may end mid-epoch)."""
    eval_every: int | None = Field(None, ge=1)
    """End a round every this many optimiser steps instead of at each epoch's end."""
    monitor: str = "train_loss"
    """History key that selects the best round: ``train_loss`` or a key of the validation dict."""
    mode: Literal["min", "max"] = "min"
    min_delta: float = Field(0.0, ge=0)
    """Improvement needed to count as better (absolute)."""
    patience: int | None = Field(None, ge=1)
    """Rounds without improvement (counted after leaving the plateau) before stopping; None: never stop early."""
    min_rounds: int = Field(1, ge=1)
    """No early stop before this many rounds."""
    plateau_tol: float = Field(0.05, ge=0, lt=1)
    """Relative drop of the training loss below the first round's that ends the starting plateau."""
    restore_best: bool = True
    """Load the selected round's weights into the models at the end."""
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    """Mixed precision on CUDA (a no-op on the CPU)."""
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    """float16 also scales the loss (GradScaler)."""
    accumulate: int = Field(1, ge=1)
    """Batches whose gradients are summed before each optimiser step."""
    clip_grad_norm: float | None = Field(None, gt=0)
    scheduler_interval: Literal["epoch", "step"] = "epoch"
    progress: bool = True
    desc: str = "train"

    @model_validator(mode="after")
    def _length(self) -> EngineConfig:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("give epochs, max_steps or both")
        return self
