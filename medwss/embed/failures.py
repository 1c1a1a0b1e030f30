"""The failures file of a batch job: one CSV row per failed case (case_id, image, error).

A case that fails again replaces its row, a case that later succeeds loses it, and the file is
removed when no case fails; every change is written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from medwss.io.atomic import write_text

FIELDS = ("case_id", "image", "error")


def one_line(exc: BaseException | str) -> str:
    """An exception as one line: its type and the first line of its message."""
    if isinstance(exc, str):
        return " ".join(exc.split())
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


def read_failures(path: str | Path) -> list[dict[str, str]]:
    """The rows of a failures file (none if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r.get("case_id")]


class FailureLog:
    """Failed cases of a job, kept in a CSV beside its outputs.

    Args:
        path: The CSV; existing rows are loaded (a re-run keeps the failures it does not redo).
        fresh: Start empty, dropping rows of earlier runs.
    """

    def __init__(self, path: str | Path, fresh: bool = False) -> None:
        self.path = Path(path)
        self.rows = {} if fresh else {r["case_id"]: r for r in read_failures(self.path)}
        if fresh:
            self.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.rows)

    def record(self, case_id: str, image: str | Path, error: BaseException | str) -> None:
        self.rows[case_id] = {"case_id": case_id, "image": str(image), "error": one_line(error)}
        self._write()

    def clear(self, case_id: str) -> None:
        if self.rows.pop(case_id, None) is not None:
            self._write()

    def _write(self) -> None:
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows.values())
        write_text(self.path, buf.getvalue())


def merge_failures(parts: list[Path], target: Path, finished: set[str]) -> int:
    """Fold per-rank failure files into `target`, dropping cases now `finished`; delete the parts."""
    log = FailureLog(target)
    for case_id in list(log.rows):
        if case_id in finished:
            log.clear(case_id)
    for p in parts:
        for r in read_failures(p):
            log.record(r["case_id"], r["image"], r["error"])
        p.unlink(missing_ok=True)
    return len(log)
