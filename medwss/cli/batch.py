"""How a batch command ends: one summary line on stderr and the exit code (0 / 2 / 3).

Every batch command (tile, embed, mil train/predict/heatmap, pseudo *, scribble train/predict,
coin segment, evaluate, al) runs its cases through `medwss.jobs.Job`, which records the cases that
failed in the job's one failure log (``failures.csv`` in its output folder: case_id, stage,
error_class, message, image), finishes the other cases and returns through `finish`, which prints

    medwss tile: 8 done, 2 skipped (already done), 1 failed; see out/failures.csv

and returns the exit code:

- 0: every case done (or already done and skipped);
- 3: some cases failed, the others are done;
- 2: every case failed, or a job-wide error (raised as `medwss.errors.MedwssError` before the loop).
"""

from __future__ import annotations

import sys

from medwss.jobs import JobSummary

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_PARTIAL = 3


def summary_line(command: str, summary: JobSummary) -> str:
    """``"medwss COMMAND: D done, S skipped (already done), F failed; see LOG"`` (the parts that apply)."""
    parts = [f"{summary.done} done"]
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped (already done)")
    parts.append(f"{summary.failed} failed")
    where = f"; see {summary.log}" if summary.failed and summary.log else ""
    return f"medwss {command}: {', '.join(parts)}{where}"


def finish(command: str, summary: JobSummary) -> int:
    """Print the summary line of a batch run on stderr; its exit code.

    Args:
        command: The command, for the message (``"tile"``, ``"mil predict"``).
        summary: The job's counts (`medwss.jobs.Job.summary`).

    Returns:
        0 when none failed, 3 when some (not all) failed, 2 when all failed (none done or skipped).
    """
    print(summary_line(command, summary), file=sys.stderr)
    if summary.failed <= 0:
        return EXIT_OK
    return EXIT_ERROR if summary.done + summary.skipped == 0 else EXIT_PARTIAL
