"""How a batch command ends: one summary line on stderr and the exit code (0 / 2 / 3).

Every batch command (tile, embed, mil train/predict/heatmap, pseudo *, scribble predict, coin
segment, evaluate) records the cases that failed in the job's one failure log
(`medwss.embed.failures.FailureLog`, ``failures.csv`` in its output folder), finishes the other
cases and returns through `finish`:

- 0: every case done (or already done and skipped);
- 3: some cases failed, the others are done ("3 of 10 cases failed; see out/failures.csv");
- 2: every case failed, or a job-wide error (raised as `medwss.errors.MedwssError` before the loop).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from medwss.embed.failures import FailureLog, one_line

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_PARTIAL = 3


def finish(command: str, total: int, failed: int, log: str | Path | None = None, unit: str = "case") -> int:
    """The exit code of a batch of `total` cases of which `failed` failed; prints the summary when any did.

    Args:
        command: The command, for the message (``"tile"``, ``"mil predict"``).
        total: Cases the job was asked to do (done, skipped as finished and failed together).
        failed: Cases that failed.
        log: The failure log the failed cases are listed in, named in the message.
        unit: What a case is called (``"case"``, ``"file"``).

    Returns:
        0 when none failed, 3 when some (not all) failed, 2 when all failed (or `total` is 0 and `failed` > 0).
    """
    if failed <= 0:
        return EXIT_OK
    total = max(total, failed)
    where = f"; see {log}" if log else ""
    print(f"medwss {command}: {failed} of {total} {unit}{'' if total == 1 else 's'} failed{where}", file=sys.stderr)
    return EXIT_ERROR if failed >= total else EXIT_PARTIAL


def record_failures(log: str | Path, failures: Iterable[Mapping[str, object] | str], fresh: bool = True) -> FailureLog:
    """Write failures reported in another shape into the job's one failure log (a ``failures.csv``).

    Accepts the shapes the workflows return: ``{"case_id", "error"|"problem", "image"?}`` dicts and
    ``"case_id: message"`` strings.

    Args:
        log: The CSV (``OUT/failures.csv``; for a command whose output is one file, ``FILE.failures.csv``).
        failures: The failures.
        fresh: Drop rows of earlier runs (the job has redone every case).
    """
    book = FailureLog(log, fresh=fresh)
    for f in failures:
        if isinstance(f, str):
            case_id, _, message = f.partition(": ")
            image: object = ""
        else:
            case_id = str(f.get("case_id", ""))
            message = str(f.get("error", f.get("problem", "")))
            image = f.get("image", f.get("path", ""))
        book.record(case_id or "?", str(image or ""), one_line(message))
    return book
