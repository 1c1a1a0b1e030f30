"""A failures file: one CSV row per case that failed (case_id, image, error), appended as they happen."""

from __future__ import annotations

import csv
from pathlib import Path

FIELDS = ("case_id", "image", "error")


class FailureLog:
    """Append-only record of failed cases; the job goes on after each.

    Args:
        path: CSV file; created with a header on the first failure.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0

    def record(self, case_id: str, image: str | Path, error: BaseException | str) -> None:
        message = " ".join(str(error).split()) or type(error).__name__
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(FIELDS)
            w.writerow([case_id, str(image), message])
        self.count += 1


def read_failures(path: str | Path) -> list[dict[str, str]]:
    """The rows of a failures file (none if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def merge_failures(parts: list[Path], target: Path) -> int:
    """Concatenate per-rank failure files into `target` (replacing it) and delete the parts."""
    rows = [r for p in parts for r in read_failures(p)]
    if target.exists():
        target.unlink()
    log = FailureLog(target)
    for r in rows:
        log.record(r["case_id"], r["image"], r["error"])
    for p in parts:
        p.unlink(missing_ok=True)
    return len(rows)
