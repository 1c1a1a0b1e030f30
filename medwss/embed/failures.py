"""The failures file of a batch job: now `medwss.jobs` (the per-case runner and its one failure log).

Re-exported here for the code that imports it from its first home.
"""

from __future__ import annotations

from medwss.jobs import FIELDS, FailureLog, describe, failure_row, merge_failures, one_line, read_failures

__all__ = ["FIELDS", "FailureLog", "describe", "failure_row", "merge_failures", "one_line", "read_failures"]
