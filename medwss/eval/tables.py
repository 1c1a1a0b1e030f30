"""Markdown tables of evaluation summaries: one setting per group, or several settings side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NAN = float("nan")

COMPARE_METRICS = ("dice", "auroc", "ap", "sens@1fp", "ranking")
_TITLES = {"dice": "Dice (lesion cases)", "dice_all": "Dice (all)", "auroc": "AUROC", "ap": "AP", "ranking": "Ranking"}


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name, NAN)
    if value is None or not np.isfinite(value):
        return "n/a"
    lo, hi = row.get(f"{name}_lo", NAN), row.get(f"{name}_hi", NAN)
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def compare(tables: dict[str, Sequence[dict[str, Any]]], metrics: Sequence[str] = COMPARE_METRICS) -> str:
    """A Markdown table of several settings' summaries side by side, grouped by group.

    Args:
        tables: Setting name → summary rows from `summarize` (e.g. ``{"single": ..., "ensemble": ...}``).
        metrics: Summary keys to show; those with ``_lo``/``_hi`` get their interval.

    Returns:
        Markdown: one line per (group, setting), ``all`` first, then groups in their order.
    """
    order: list[str] = ["all"]
    for rows in tables.values():
        order += [str(r["group"]) for r in rows if str(r["group"]) not in order]
    head = ["group", "setting", "n", *(_TITLES.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in order:
        for setting, rows in tables.items():
            for row in (r for r in rows if str(r["group"]) == group):
                cells = [group, setting, str(row.get("n", "")), *(_cell(row, m) for m in metrics)]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = COMPARE_METRICS) -> str:
    """A Markdown table of one setting's summary rows (one line per group)."""
    head = ["group", "n", "lesions", *(_TITLES.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["group"]), str(row["n"]), str(row.get("n_lesions", "")), *(_cell(row, m) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
