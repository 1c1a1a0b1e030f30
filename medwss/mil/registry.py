"""Every aggregator, registered: import this module to build one by name.

Example:
    >>> from medwss.mil.registry import create_aggregator, list_aggregators
    >>> list_aggregators()
    ['abmil', 'clam_sb', 'insight', 'max', 'mean', 'transmil']
    >>> model = create_aggregator("insight", in_dim=512, n_classes=1, hidden=64)
"""

from __future__ import annotations

from medwss.mil import abmil, clam, insight, simple, transmil  # noqa: F401  (they register on import)
from medwss.mil.base import Aggregator, Bag, MILOutput, create_aggregator, list_aggregators, register_aggregator

__all__ = ["Aggregator", "Bag", "MILOutput", "create_aggregator", "list_aggregators", "register_aggregator"]
