"""Errors of the field-technician diagnostics.

    sync.problem.Problem
    └── DiagnoseError          diagnose_failed: base; a diagnostic step could not run
        └── SnapshotError      snapshot_failed: a database could not even be copied (missing, unreadable, not SQLite)

A check turns these into a ``fail`` finding (English and Chinese); they never reach the clerk's page.
"""

from __future__ import annotations

from sync.problem import Problem


class DiagnoseError(Problem):
    code = "diagnose_failed"
    zh = "诊断步骤无法完成"


class SnapshotError(DiagnoseError):
    """A database could not even be copied (missing, unreadable, not SQLite)."""

    code = "snapshot_failed"
    zh = "无法读取数据库副本：文件缺失、不可读或不是 SQLite 数据库"
