"""What one check found: a status, a one-line finding and the next step, in English and Chinese.

A field technician reads the finding and does the next step; a tool reads ``--json``. Statuses map
to the exit code of ``edge diagnose``: any ``fail`` is broken (2), else any ``warn`` is degraded (1),
else healthy (0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

OK, WARN, FAIL = "ok", "warn", "fail"
STATUSES = (OK, WARN, FAIL)
EXIT_HEALTHY, EXIT_DEGRADED, EXIT_BROKEN = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    finding: str
    finding_zh: str
    next_step: str = ""
    next_step_zh: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "finding": self.finding,
                "finding_zh": self.finding_zh, "next_step": self.next_step,
                "next_step_zh": self.next_step_zh, "data": dict(self.data)}


def ok(check: str, finding: str, finding_zh: str, **data: Any) -> Finding:
    return Finding(check, OK, finding, finding_zh, "", "", data)


def warn(check: str, finding: str, finding_zh: str, next_step: str, next_step_zh: str, **data: Any) -> Finding:
    return Finding(check, WARN, finding, finding_zh, next_step, next_step_zh, data)


def fail(check: str, finding: str, finding_zh: str, next_step: str, next_step_zh: str, **data: Any) -> Finding:
    return Finding(check, FAIL, finding, finding_zh, next_step, next_step_zh, data)


def exit_code(findings: Iterable[Finding]) -> int:
    statuses = {f.status for f in findings}
    if FAIL in statuses:
        return EXIT_BROKEN
    if WARN in statuses:
        return EXIT_DEGRADED
    return EXIT_HEALTHY
