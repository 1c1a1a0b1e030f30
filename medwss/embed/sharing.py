"""How several processes share one tiling or embedding job: shards, per-case claim files, one failure log.

- **Shards** (`--shard i/n`, or a SLURM job array): case ids are sorted and dealt round-robin, the
  j-th id (0-based) going to shard ``j % n`` (`shard_cases`). The split is stable for a given
  manifest (it does not depend on the row order or on which files exist) and shards differ in
  size by at most one case. Without `--shard` the index is read from ``SLURM_ARRAY_TASK_ID``
  minus ``SLURM_ARRAY_TASK_MIN`` (0 when unset) and the count from ``SLURM_ARRAY_TASK_COUNT``
  (`shard_from_env`), so ``sbatch --array=0-7`` runs eight shards with no flag.
- **Claims** (`CaseClaims`): before a process works on a case it creates ``<output>.claim`` beside
  the case's output with ``os.open(O_CREAT | O_EXCL)`` (atomic, also on NFS v3+), holding its pid,
  host and time; it removes it when the case is finished, or at the end of the job for a case that
  failed (so a concurrent process does not try it again; the next run does). A process that finds a case
  claimed leaves it to its owner. A claim is stale, and taken over, when its pid is gone on the same
  host or when it has not been refreshed for `timeout_s` (a background thread touches the claims a
  process holds every ``timeout_s / 10`` seconds, so a live owner on another host keeps its claim).
  So two `medwss tile` (or `embed`) processes on one folder, on one machine or several, do every
  case once between them.
- **One failure log** (`SharedFailureLog`): shards and concurrent processes write the same
  ``failures.csv``; every change re-reads the file and rewrites it (atomically) under a lock file
  (``failures.csv.lock``, the same claim mechanism), rows sorted by case id, so no process loses
  another's rows and the file does not depend on the order the cases finished in.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from medwss.errors import ConfigError
from medwss.jobs import FailureLog, failure_row, read_failures

T = TypeVar("T")

CLAIM_TIMEOUT_S = 600.0
"""Seconds after which a claim that was not refreshed is stale (its owner stopped refreshing it: killed or hung)."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)`` with ``0 <= i < n``.

    Raises:
        ConfigError: Not of that form.
    """
    head, sep, tail = str(text).strip().partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return index, count


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The shard of a SLURM job array task (``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of
    ``SLURM_ARRAY_TASK_COUNT``), or None outside an array.

    Raises:
        ConfigError: The variables do not give an index inside the count (e.g. ``--array=0-9:2``).
    """
    env = dict(os.environ) if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
    except ValueError as exc:
        raise ConfigError(f"SLURM_ARRAY_TASK_ID/COUNT are not integers: {exc}") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"SLURM array task {env['SLURM_ARRAY_TASK_ID']} (min {env.get('SLURM_ARRAY_TASK_MIN', '0')}) is not "
            f"a shard of {count}: use a contiguous --array=0-{count - 1}, or pass --shard i/n"
        )
    return index, count


def resolve_shard(shard: str | tuple[int, int] | None, env: bool = False) -> tuple[int, int] | None:
    """`shard` given as ``"i/n"`` or a pair; None for every case (with `env`: the SLURM array's, `shard_from_env`).

    The library jobs take None as "every case"; the commands pass ``env=True`` so that `--shard`
    falls back to the SLURM job array.
    """
    if shard is None:
        return shard_from_env() if env else None
    if isinstance(shard, str):
        return parse_shard(shard)
    index, count = int(shard[0]), int(shard[1])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: expected 0 <= i < n")
    return index, count


def shard_cases(cases: Sequence[T], shard: tuple[int, int] | None, key: Any = None) -> list[T]:
    """The cases of `shard` ``(i, n)``: the sorted ids dealt round-robin (the j-th to shard ``j % n``), in input order.

    Args:
        cases: Cases (anything with ``case_id``, or see `key`).
        shard: ``(i, n)``, or None for every case.
        key: The id of an item (default ``item.case_id``).
    """
    if shard is None:
        return list(cases)
    index, count = shard
    key = key or (lambda c: c.case_id)
    ids = sorted({key(c) for c in cases})
    mine = {cid for j, cid in enumerate(ids) if j % count == index}
    return [c for c in cases if key(c) in mine]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class CaseClaims:
    """Per-case claim files in `folder`, held by this process while it works on a case.

    Args:
        folder: Where the claims go (the job's output folder).
        timeout_s: Claims not refreshed for this long are stale (default `CLAIM_TIMEOUT_S`).
        suffix: Appended to the name given to `claim` (``cmu.tiles.h5`` → ``cmu.tiles.h5.claim``).
        heartbeat: Refresh held claims from a background thread (off for short critical sections).
    """

    def __init__(
        self, folder: str | Path, timeout_s: float = CLAIM_TIMEOUT_S, suffix: str = ".claim", heartbeat: bool = True
    ) -> None:
        self.heartbeat = heartbeat
        self.folder = Path(folder)
        self.timeout_s = float(timeout_s)
        self.suffix = suffix
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{self.suffix}"

    def _owner(self) -> bytes:
        return json.dumps({"pid": self.pid, "host": self.host, "time": time.time()}).encode()

    def _is_stale(self, path: Path) -> tuple[bool, bytes | None]:
        try:
            raw = path.read_bytes()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True, None
        except OSError:
            return False, None
        if age > self.timeout_s:
            return True, raw
        try:
            info = json.loads(raw.decode() or "{}")
        except ValueError:  # being written right now, or garbage: garbage goes stale by age
            return False, raw
        if info.get("host") == self.host and isinstance(info.get("pid"), int) and info["pid"] != self.pid:
            return not _pid_alive(info["pid"]), raw
        return False, raw

    def claim(self, name: str) -> bool:
        """Claim `name`; False when another live process holds it. A stale claim is taken over."""
        path = self.path(name)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                stale, raw = self._is_stale(path)
                if not stale:
                    return False
                if raw is not None and not self._break(path, raw):
                    return False
                continue
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # folder removed under us
                    self.folder.mkdir(parents=True, exist_ok=True)
                    continue
                raise
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._owner())
            with self._lock:
                self._held[name] = path
            if self.heartbeat:
                self._start_heartbeat()
            return True
        return False

    def _break(self, path: Path, judged: bytes) -> bool:
        """Remove a stale claim, unless someone replaced it since we read it (then it is theirs)."""
        aside = path.with_name(f"{path.name}.stale.{self.pid}.{threading.get_ident()}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return True  # another process broke it first
        try:
            if aside.read_bytes() != judged:  # a fresh claim was made in between: give it back
                with contextlib.suppress(OSError):
                    os.link(aside, path)
                return False
            return True
        finally:
            aside.unlink(missing_ok=True)

    def release(self, name: str) -> None:
        """Remove this process's claim on `name` (finished or failed)."""
        with self._lock:
            path = self._held.pop(name, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def release_all(self) -> None:
        for name in list(self._held):
            self.release(name)
        self._stop.set()

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[bool]:
        """``with claims.holding(name) as mine:`` — claimed for the block when `mine`, released after."""
        mine = self.claim(name)
        try:
            yield mine
        finally:
            if mine:
                self.release(name)

    def _start_heartbeat(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="medwss-claims", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        period = max(self.timeout_s / 10.0, 0.05)
        while not self._stop.wait(period):
            with self._lock:
                held = list(self._held.values())
            for p in held:
                with contextlib.suppress(OSError):
                    os.utime(p)

    def __enter__(self) -> CaseClaims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()


@contextlib.contextmanager
def file_lock(path: str | Path, timeout_s: float = 60.0, stale_s: float = 30.0) -> Iterator[None]:
    """Hold the lock file `path` (created with O_EXCL) for a short critical section.

    A lock whose owner is gone (same host) or older than `stale_s` is broken.

    Raises:
        TimeoutError: The lock was not obtained within `timeout_s`.
    """
    path = Path(path)
    claims = CaseClaims(path.parent, timeout_s=stale_s, suffix="", heartbeat=False)
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while not claims.claim(path.name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: could not take the lock in {timeout_s:g} s (remove it if no job runs)")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        claims.release_all()


class SharedFailureLog(FailureLog):
    """A `FailureLog` that several processes may write at once: every change is a locked read-modify-write.

    Rows are kept sorted by case id. Args as `FailureLog`.
    """

    def __init__(self, path: str | Path, fresh: bool = False) -> None:
        self.lock_path = Path(path).with_name(Path(path).name + ".lock")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            super().__init__(path, fresh=fresh)

    def _change(self, case_id: str, row: dict[str, str] | None) -> None:
        with file_lock(self.lock_path):
            self.rows = {r["case_id"]: r for r in read_failures(self.path)}
            if row is None:
                if self.rows.pop(case_id, None) is None:
                    return
            else:
                self.rows[case_id] = row
            self.rows = dict(sorted(self.rows.items()))
            self._write()

    def record(
        self,
        case_id: str,
        image: str | Path | None,
        error: BaseException | str,
        stage: str = "",
        error_class: str | None = None,
    ) -> None:
        self._change(case_id, failure_row(case_id, image, error, stage, error_class))

    def clear(self, case_id: str) -> None:
        self._change(case_id, None)

    def merge(self, parts: Sequence[Path], finished: set[str]) -> int:
        """Fold per-rank failure files into this log, dropping cases now `finished`; delete the parts."""
        with file_lock(self.lock_path):
            rows = {r["case_id"]: r for r in read_failures(self.path) if r["case_id"] not in finished}
            for p in parts:
                rows.update({r["case_id"]: r for r in read_failures(p)})
            self.rows = dict(sorted(rows.items()))
            self._write()
            for p in parts:
                p.unlink(missing_ok=True)
        return len(self.rows)
