"""Model selection on a named metric with a direction, and plateau-aware early stopping."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from medwss.train.config import EngineConfig


@dataclass
class Selection:
    """Which round is best so far, and whether to stop (see `EngineConfig` for the plateau rule)."""

    best_value: float | None = None
    best_round: int = -1
    bad_rounds: int = 0
    first_loss: float | None = None
    left_plateau: bool = False
    stopped_early: bool = False

    def update(self, round_index: int, row: dict[str, Any], cfg: EngineConfig) -> bool:
        """Account for a finished round's history `row`; True when it is the best so far."""
        loss, value = _number(row.get("train_loss")), _number(row.get(cfg.monitor))
        if self.first_loss is None:
            self.first_loss = loss
        elif loss is not None and loss < self.first_loss * (1 - cfg.plateau_tol):
            self.left_plateau = True
        improved = value is not None and (
            self.best_value is None
            or (
                value < self.best_value - cfg.min_delta
                if cfg.mode == "min"
                else value > self.best_value + cfg.min_delta
            )
        )
        if improved:
            self.best_value, self.best_round, self.bad_rounds = value, round_index, 0
        elif self.left_plateau:
            self.bad_rounds += 1
        if self.best_round < 0 and round_index == 0:  # no usable metric yet: the first round stands in
            self.best_round = 0
            improved = True
        if cfg.patience is not None and self.bad_rounds >= cfg.patience and round_index + 1 >= cfg.min_rounds:
            self.stopped_early = True
        return improved

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def _number(x: Any) -> float | None:
    """`x` as a float when it is a finite number, else None (NaN AUCs, missing keys)."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None
