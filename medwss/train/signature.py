"""One resume policy: a run's config minus its declared run-only keys is its signature.

A checkpoint records the signature of the run that wrote it; resuming under another signature is
an error naming the keys that changed (never a silent restart).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medwss.errors import ConfigError

RUN_ONLY = ("out", "out_dir", "progress", "quiet", "device", "num_workers", "workers")
"""Keys that never change what a run computes (where it writes, how it shows progress, where it runs)."""


def signature(config: Mapping[str, Any], run_only: Iterable[str] = ()) -> dict[str, Any]:
    """`config` (JSON-normalised) without `RUN_ONLY` and the extra `run_only` keys."""
    skip = set(RUN_ONLY) | set(run_only)
    plain = json.loads(json.dumps(dict(config), default=str, sort_keys=True))
    return {k: v for k, v in plain.items() if k not in skip}


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ (present in one only counts as differing), sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING))


def check_compatible(old: Mapping[str, Any], new: Mapping[str, Any], path: str | Path) -> None:
    """Raise `ConfigError` naming the changed keys when the signatures differ."""
    diff = changed_keys(old, new)
    if diff:
        raise ConfigError(
            f"checkpoint was made with other settings ({', '.join(diff)}); "
            "use the same settings, another output, or delete the checkpoint to start again",
            path,
        )


_MISSING = object()
