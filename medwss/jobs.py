"""The per-case runner of every batch command, and its one failure log.

A batch job (tile, embed, mil predict/heatmap, scribble train/predict, pseudo *, coin segment,
evaluate, al) runs one step per case through a `Job`: the case's errors are caught, recorded in the
job's ``failures.csv`` and counted, and the job goes on with the next case. At the end
`Job.summary` gives the counts (done, skipped as already done, failed) and the log's path, and
`medwss.cli.batch.finish` turns them into the summary line and the exit code.

**Which errors fail a case** (`CASE_ERRORS`, the one set every loop catches): `MedwssError` (what
medwss raises on purpose), ``OSError`` (missing, unreadable or truncated files, h5py), ``EOFError``,
``ValueError`` (bad values, pydantic validation, unicode), ``TypeError``, ``LookupError`` (a missing
key or index in a file's content), ``ArithmeticError``, ``RuntimeError`` (torch, a CUDA out-of-memory
error included), ``AssertionError`` and ``ImportError`` (a reader library one file needs),
``struct.error`` and ``zipfile.BadZipFile`` (damaged containers). Not caught, so the job stops:
``KeyboardInterrupt`` and ``SystemExit``, ``MemoryError`` (the next case would most likely fail
the same way) and programming errors such as ``NameError`` / ``AttributeError``.

**The failure log** (`FailureLog`, ``OUT/failures.csv``; ``FILE.failures.csv`` for a command whose
output is one file): one row per failed case, columns `FIELDS` = case_id, stage (the step that
failed: ``load``, ``tile``, ``embed``, ``predict``...), error_class, message (the first line of the
error) and image (the file concerned, where known). A case that fails again replaces its row, a case
that later succeeds (or is skipped as already done) loses it, and the file is removed when no case
is left in it; every change is written atomically.
"""

from __future__ import annotations

import csv
import io
import struct
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from medwss.errors import MedwssError
from medwss.io.atomic import write_text

CASE_ERRORS: tuple[type[BaseException], ...] = (
    MedwssError, OSError, EOFError, ValueError, TypeError, LookupError, ArithmeticError, RuntimeError,
    AssertionError, ImportError, struct.error, zipfile.BadZipFile,
)  # fmt: skip
"""The errors that fail one case (the others go on); see the module docstring."""

FIELDS = ("case_id", "stage", "error_class", "message", "image")
"""The columns of ``failures.csv``."""

T = TypeVar("T")
C = TypeVar("C")


def one_line(exc: BaseException | str) -> str:
    """An exception as one line: its type and the first line of its message (a string: its words)."""
    if isinstance(exc, str):
        return " ".join(exc.split())
    cls, message = describe(exc)
    return f"{cls}: {message}".strip()


def describe(exc: BaseException | str) -> tuple[str, str]:
    """``(error_class, message)`` of an error: its type name and the first line of its message.

    A string is a message whose class is unknown (``""``), unless it reads ``"SomeError: message"``.
    """
    if isinstance(exc, str):
        text = " ".join(exc.split())
        head, sep, rest = text.partition(": ")
        if sep and head.isidentifier() and (head.endswith(("Error", "Exception")) or head == "FileNotFound"):
            return head, rest
        return "", text
    lines = str(exc).strip().splitlines()
    return type(exc).__name__, " ".join(lines[0].split()) if lines else ""


def _upgrade(row: dict[str, str]) -> dict[str, str]:
    """A row of a failures file written before `FIELDS` had stage/error_class/message (one ``error`` column)."""
    if "message" not in row and "error" in row:
        cls, message = describe(row.get("error") or "")
        row = {**row, "stage": row.get("stage", ""), "error_class": cls, "message": message}
    return {k: row.get(k) or "" for k in FIELDS}


def read_failures(path: str | Path) -> list[dict[str, str]]:
    """The rows of a failures file, keyed by `FIELDS` (none if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        return [_upgrade(r) for r in csv.DictReader(fh) if r.get("case_id")]


def failure_row(
    case_id: str, image: str | Path | None, error: BaseException | str, stage: str = "", error_class: str | None = None
) -> dict[str, str]:
    """One row of the failure log (`FIELDS`)."""
    cls, message = describe(error)
    return {"case_id": str(case_id), "stage": stage, "error_class": cls if error_class is None else error_class,
            "message": message, "image": "" if image is None else str(image)}  # fmt: skip


class FailureLog:
    """Failed cases of a job, kept in a CSV beside its outputs (columns `FIELDS`).

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

    def record(
        self,
        case_id: str,
        image: str | Path | None,
        error: BaseException | str,
        stage: str = "",
        error_class: str | None = None,
    ) -> None:
        """Record (or replace) the failure of `case_id`: `error` gives error_class and message."""
        self.rows[case_id] = failure_row(case_id, image, error, stage, error_class)
        self._write()

    def clear(self, case_id: str) -> None:
        """The case is done: drop its row."""
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
            log.rows[r["case_id"]] = r
        log._write()
        p.unlink(missing_ok=True)
    return len(log)


@dataclass
class JobSummary:
    """What a batch job did: cases ``done``, ``skipped`` (already done), ``failed``, and its failure log."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    log: Path | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    """The rows of this run's failures (`FIELDS`)."""

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.failed


class Attempt:
    """One case's run inside `Job.attempt`: set `stage` as the case moves on; `skip()` / `leave()` it."""

    def __init__(self, case_id: str, stage: str, image: str | Path | None) -> None:
        self.case_id, self.stage, self.image = case_id, stage, image
        self.outcome = "done"

    def skip(self) -> None:
        """The case was already done: counted as skipped (its failure row, if any, is dropped)."""
        self.outcome = "skipped"

    def leave(self) -> None:
        """The case is not this job's to count (another process holds it)."""
        self.outcome = "left"


_CURRENT: ContextVar[Job | None] = ContextVar("medwss_current_job", default=None)


class Job:
    """The cases of one batch job: counts, the failure log, and the per-case error handling.

    Args:
        log: The failure log: a path (``OUT/failures.csv``) or a `FailureLog` (or a subclass, such
            as `medwss.embed.sharing.SharedFailureLog`); None keeps failures in memory only.
        fresh: With a path: drop rows of earlier runs (the job redoes every case).
        command: Names the job in the per-case messages (``"medwss tile: c1 failed: ..."``).
        quiet: No per-case message on stderr (False: ``"medwss COMMAND: CASE failed (STAGE): ERROR"``).
    """

    def __init__(
        self, log: str | Path | FailureLog | None, fresh: bool = False, command: str = "", quiet: bool = True
    ) -> None:
        self.log = log if isinstance(log, FailureLog) or log is None else FailureLog(log, fresh=fresh)
        self.command, self.quiet = command, quiet
        self.done_ids: dict[str, None] = {}  # ordered sets
        self.skipped_ids: dict[str, None] = {}
        self.failures: dict[str, dict[str, str]] = {}

    # -- outcomes -------------------------------------------------------------------------
    def done(self, case_id: str) -> None:
        """`case_id` is done: counted, and its row (of an earlier run) dropped."""
        self.failures.pop(case_id, None)
        self.done_ids[case_id] = None
        if self.log is not None:
            self.log.clear(case_id)

    def skip(self, case_id: str) -> None:
        """`case_id` was already done: counted as skipped, its row dropped."""
        self.skipped_ids[case_id] = None
        if self.log is not None:
            self.log.clear(case_id)

    def fail(
        self,
        case_id: str,
        error: BaseException | str,
        stage: str = "",
        image: str | Path | None = None,
        error_class: str | None = None,
    ) -> None:
        """`case_id` failed (once per case: a later failure of the same case replaces the row)."""
        row = failure_row(case_id, image, error, stage, error_class)
        self.failures[case_id] = row
        self.done_ids.pop(case_id, None)
        if self.log is not None:
            self.log.record(case_id, row["image"], row["message"], stage=stage, error_class=row["error_class"])
        if not self.quiet:
            what = f"{row['error_class']}: {row['message']}" if row["error_class"] else row["message"]
            where = f" ({stage})" if stage else ""
            _write_line(f"medwss {self.command}: {case_id} failed{where}: {what}" if self.command else
                        f"{case_id} failed{where}: {what}")  # fmt: skip

    def failed(self, case_id: str) -> bool:
        """Whether `case_id` has failed in this run."""
        return case_id in self.failures

    # -- running ---------------------------------------------------------------------------
    @contextmanager
    def attempt(self, case_id: str, stage: str = "", image: str | Path | None = None) -> Iterator[Attempt]:
        """Run one case's step in the block: a `CASE_ERRORS` error is recorded (with the attempt's
        `stage`) and swallowed; a clean exit counts the case done unless `Attempt.skip` /
        `Attempt.leave` was called."""
        a = Attempt(case_id, stage, image)
        try:
            yield a
        except CASE_ERRORS as exc:
            a.outcome = "failed"
            self.fail(case_id, exc, a.stage, a.image)
            return
        if a.outcome == "done":
            self.done(case_id)
        elif a.outcome == "skipped":
            self.skip(case_id)

    def call(self, case_id: str, fn: Callable[..., T], *args: Any, stage: str = "", image: Any = None) -> T | None:
        """``fn(*args)``; None (and the case recorded as failed) where it raises one of `CASE_ERRORS`.

        Counts nothing on success: for a step of a longer case, the caller calls `done`."""
        try:
            return fn(*args)
        except CASE_ERRORS as exc:
            self.fail(case_id, exc, stage, image)
            return None

    def run(
        self,
        cases: Iterable[C],
        fn: Callable[[C], T],
        case_id: Callable[[C], str] = lambda c: str(getattr(c, "case_id", c)),
        stage: str = "",
        image: Callable[[C], Any] | None = None,
        is_done: Callable[[C], bool] | None = None,
        progress: bool = False,
        desc: str | None = None,
    ) -> list[T | None]:
        """``fn(case)`` for every case, in order; None for a case that failed or was skipped.

        Args:
            cases: The cases.
            fn: The per-case step.
            case_id: A case's id (default its ``case_id`` attribute).
            stage: The stage name recorded for a failure.
            image: A case's file, for the log (default its ``image`` attribute, if any).
            is_done: Resume: cases for which it is true are skipped as already done.
            progress: A tqdm bar.
            desc: The bar's label (default `stage`).
        """
        from tqdm.auto import tqdm

        items = list(cases)
        out: list[T | None] = []
        for c in tqdm(items, desc=desc or stage or None, unit="case", disable=not progress, leave=False):
            cid = case_id(c)
            where = image(c) if image is not None else getattr(c, "image", None)
            result: T | None = None
            with self.attempt(cid, stage, where) as a:
                if is_done is not None and is_done(c):
                    a.skip()
                else:
                    result = fn(c)
            out.append(result if a.outcome == "done" else None)
        return out

    # -- ambient job (for steps called deep inside a workflow) -------------------------------
    @contextmanager
    def active(self) -> Iterator[Job]:
        """Within it, `current_job()` is this job (`medwss.pseudo.workflow.per_case` records there)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def summary(self) -> JobSummary:
        """The counts of this run and the log's path."""
        return JobSummary(
            done=len(self.done_ids),
            skipped=len(self.skipped_ids),
            failed=len(self.failures),
            log=None if self.log is None else self.log.path,
            failures=list(self.failures.values()),
        )


def current_job() -> Job | None:
    """The job made active with `Job.active`, if any."""
    return _CURRENT.get()


def run_cases(
    cases: Iterable[C],
    fn: Callable[[C], T],
    log: str | Path | FailureLog | None,
    stage: str = "",
    is_done: Callable[[C], bool] | None = None,
    progress: bool = False,
    fresh: bool = False,
    command: str = "",
    **options: Any,
) -> tuple[list[T | None], JobSummary]:
    """``fn(case)`` for every case through a fresh `Job` logging to `log`; the results and the summary.

    Options as `Job.run` (``case_id``, ``image``, ``desc``)."""
    job = Job(log, fresh=fresh, command=command)
    results = job.run(cases, fn, stage=stage, is_done=is_done, progress=progress, **options)
    return results, job.summary()


def _write_line(msg: str) -> None:
    """A per-case message on stderr that does not break a tqdm bar."""
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)
