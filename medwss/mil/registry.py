"""Every aggregator, by name: `create_aggregator`, `list_aggregators`, `register_aggregator`.

The aggregators live in the `AGGREGATORS` registry (`medwss.registry.Registry`); every module of
`medwss.mil` that calls `register_aggregator` is imported on the first lookup, so a new aggregator
is one file in `medwss/mil/` with the decorator, and nothing else.

Example:
    >>> from medwss.mil.registry import create_aggregator, list_aggregators
    >>> list_aggregators()
    ['abmil', 'clam_sb', 'insight', 'max', 'mean', 'transmil']
    >>> model = create_aggregator("insight", in_dim=512, n_classes=1, hidden=64)
"""

from __future__ import annotations

from medwss.mil.base import (
    AGGREGATORS,
    Aggregator,
    Bag,
    MILOutput,
    create_aggregator,
    list_aggregators,
    register_aggregator,
)

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "Bag",
    "MILOutput",
    "create_aggregator",
    "list_aggregators",
    "register_aggregator",
]
