"""Slice-based active learning with a contrastive-metric Coreset (Vepa et al., NeurIPS 2024).

Pool the axial slices of a manifest's volumes (`pool`), learn a slice metric with NT-Xent plus
volume / patient / adjacent-slice positives (`metric`), pick slices by k-center greedy in it
(`coreset`, `strategies`), and run annotation rounds on disk for a real team (`state`, `export`,
`ingest`, `rounds`) or simulated with an oracle (`simulate`, `plot`).
"""

from typing import TYPE_CHECKING

from medwss.lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers
    from medwss.active.coreset import kcenter_greedy, kcenter_naive
    from medwss.active.pool import SlicePool, SliceRef, build_pool
    from medwss.active.state import ALConfig, ALState
    from medwss.active.strategies import STRATEGIES, SelectionContext, get_strategy

_LAZY = {
    "kcenter_greedy": "medwss.active.coreset",
    "kcenter_naive": "medwss.active.coreset",
    "SlicePool": "medwss.active.pool",
    "SliceRef": "medwss.active.pool",
    "build_pool": "medwss.active.pool",
    "ALConfig": "medwss.active.state",
    "ALState": "medwss.active.state",
    "STRATEGIES": "medwss.active.strategies",
    "SelectionContext": "medwss.active.strategies",
    "get_strategy": "medwss.active.strategies",
}
"""Where each re-exported name lives; imported on first use, so the CLI and configs do not load torch."""

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "STRATEGIES",
    "ALConfig",
    "ALState",
    "SelectionContext",
    "SlicePool",
    "SliceRef",
    "build_pool",
    "get_strategy",
    "kcenter_greedy",
    "kcenter_naive",
]
