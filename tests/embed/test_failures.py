"""The failures file: rows replaced, cleared on success, file removed when empty, ranks merged."""

from __future__ import annotations

from medwss.errors import CorruptFileError
from medwss.jobs import FailureLog, merge_failures, read_failures


def test_record_replace_clear(tmp_path):
    path = tmp_path / "failures.csv"
    log = FailureLog(path)
    log.record("a", "a.svs", CorruptFileError("bad tile\nsecond line", "a.svs"))
    log.record("b", "b.svs", "oops")
    log.record("a", "a.svs", "again")
    rows = read_failures(path)
    assert [(r["case_id"], r["message"]) for r in rows] == [("a", "again"), ("b", "oops")]
    assert len(FailureLog(path)) == 2  # a re-run starts from the file
    log.clear("a")
    log.clear("b")
    assert not path.exists()


def test_error_is_one_line(tmp_path):
    log = FailureLog(tmp_path / "f.csv")
    log.record("a", "a.svs", CorruptFileError("bad tile\nsecond line", "a.svs"), stage="tile")
    (row,) = read_failures(tmp_path / "f.csv")
    assert row == {"case_id": "a", "stage": "tile", "error_class": "CorruptFileError", "message": "a.svs: bad tile",
                   "image": "a.svs"}  # fmt: skip
    assert (tmp_path / "f.csv").read_text().splitlines()[0] == "case_id,stage,error_class,message,image"


def test_old_error_column_is_read(tmp_path):
    (tmp_path / "f.csv").write_text("case_id,image,error\na,a.svs,OSError: gone\n")
    (row,) = read_failures(tmp_path / "f.csv")
    assert (row["error_class"], row["message"], row["image"]) == ("OSError", "gone", "a.svs")


def test_merge_ranks(tmp_path):
    FailureLog(tmp_path / "failures.csv").record("old_fixed", "x", "was bad")
    FailureLog(tmp_path / "failures.csv").record("old_still", "y", "still bad")
    FailureLog(tmp_path / "failures.rank0.csv", fresh=True).record("r0", "z", "e0")
    FailureLog(tmp_path / "failures.rank1.csv", fresh=True).record("r1", "w", "e1")
    parts = sorted(tmp_path.glob("failures.rank*.csv"))
    n = merge_failures(parts, tmp_path / "failures.csv", finished={"old_fixed"})
    assert n == 3 and {r["case_id"] for r in read_failures(tmp_path / "failures.csv")} == {"old_still", "r0", "r1"}
    assert not list(tmp_path.glob("failures.rank*.csv"))
