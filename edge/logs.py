"""Structured logs for the daemon: one JSON object per line, with the ``extra`` fields of each call.

Patients are never named at INFO and above: the structured fields that could identify someone
(``psn_name``, ``certno``, ``ssn``, ``card_no``, ``pin``) are dropped from records at INFO
and above, and the rendered message goes through :class:`edge.redact.RedactingFilter` (ID numbers,
card ids, card numbers, names after 姓名...). DEBUG keeps the fields, for a technician at the counter.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

SENSITIVE = frozenset({"psn_name", "certno", "ssn", "card_no", "pin", "identity"})  # (record.name is the logger)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, Any] = {"ts": ts, "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key in SENSITIVE and record.levelno >= logging.INFO:
                continue
            out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class DropSensitive(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            for key in SENSITIVE & set(vars(record)):
                delattr(record, key)
        return True


def setup(level: str = "INFO", *, json_lines: bool = True, stream=None) -> logging.Handler:
    """Configure the root logger for the daemon; returns the handler (tests capture through it)."""
    from edge.redact import RedactingFilter

    handler = logging.StreamHandler(stream or sys.stderr)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else plain)
    handler.addFilter(DropSensitive())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edge_daemon", False):
            root.removeHandler(h)
    handler._edge_daemon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING (hypercorn access lines, httpx request lines).
    for name in ("hypercorn", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
