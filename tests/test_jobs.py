"""`medwss.jobs`: the per-case runner and its one failure log (issue #14 item 5)."""

from __future__ import annotations

import pytest

from medwss.errors import CorruptFileError
from medwss.jobs import FIELDS, Job, current_job, read_failures, run_cases


def _step(case: str) -> str:
    if case == "bad":
        raise CorruptFileError("bad tile\nsecond line", f"{case}.svs")
    return case.upper()


def test_a_failing_case_is_recorded_the_others_done(tmp_path):
    log = tmp_path / "failures.csv"
    results, summary = run_cases(["a", "bad", "c"], _step, log, stage="tile", image=lambda c: f"{c}.svs")
    assert results == ["A", None, "C"]
    assert (summary.done, summary.skipped, summary.failed, summary.log) == (2, 0, 1, log)
    assert log.read_text().splitlines()[0] == ",".join(FIELDS)
    (row,) = read_failures(log)
    assert row == {"case_id": "bad", "stage": "tile", "error_class": "CorruptFileError",
                   "message": "bad.svs: bad tile", "image": "bad.svs"}  # fmt: skip


def test_resume_skips_done_cases_and_a_success_clears_the_row(tmp_path):
    log = tmp_path / "failures.csv"
    run_cases(["a", "bad"], _step, log, stage="tile")
    calls: list[str] = []

    def fixed(case: str) -> str:
        calls.append(case)
        return case

    results, summary = run_cases(["a", "bad"], fixed, log, stage="tile", is_done=lambda c: c == "a")
    assert calls == ["bad"] and results == [None, "bad"]
    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 0)
    assert not log.exists()  # the one row cleared: the file goes


def test_stages_steps_and_interrupts(tmp_path):
    job = Job(tmp_path / "failures.csv")
    with job.attempt("x", "load") as step:
        step.stage = "embed"
        raise OSError("disk full")
    assert job.failures["x"]["stage"] == "embed" and job.failures["x"]["error_class"] == "OSError"
    with job.active():  # an ambient job for steps deep in a workflow
        assert current_job() is job and job.call("y", int, "nope", stage="parse") is None
    assert current_job() is None and job.failed("y")
    for exc in (KeyboardInterrupt(), MemoryError(), NameError("bug")):  # not per-case errors: the job stops
        with pytest.raises(type(exc)), job.attempt("z"):
            raise exc
    assert not job.failed("z") and job.summary().failed == 2
