"""Field-technician diagnostics: each check says ok / warn / fail, what it found and what to do next.

    Finding      one check's result (check, status, finding, finding_zh, next_step, next_step_zh, data)
    Context      what to look at (state dir, centre URL, pcscd socket, reader, daemon URL, clock)
    CHECKS       the table of checks (name, function, bound, titles)
    run          run the checks concurrently, each bounded -> Report (findings, exit_code, to_json)
    render_text  the human report (English and Chinese)
    errors       DiagnoseError > SnapshotError (under sync.problem.Problem)

Read-only on the journal and the cache (snapshots via SQLite's backup API); works with the daemon down.
See docs/operations.md for the technician's guide.
"""

from ._context import Context, snapshot_db
from ._finding import (
    EXIT_BROKEN, EXIT_DEGRADED, EXIT_HEALTHY, FAIL, OK, STATUSES, WARN, Finding, exit_code, fail, ok, warn,
)
from .errors import DiagnoseError, SnapshotError
from ._runner import CHECKS, NAMES, Check, Report, render_text, run

__all__ = [
    "Context", "DiagnoseError", "SnapshotError", "snapshot_db",
    "EXIT_BROKEN", "EXIT_DEGRADED", "EXIT_HEALTHY", "FAIL", "OK", "STATUSES", "WARN", "Finding", "exit_code",
    "fail", "ok", "warn",
    "CHECKS", "NAMES", "Check", "Report", "render_text", "run",
]
