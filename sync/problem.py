"""The one error base of the whole project: ``Problem``.

Every package keeps its own documented tree (``SettlementError``, ``CardError``, ``JournalError``,
``CacheError``, ``CounterError``, ``SyncError``, ``CentreError``), and every tree hangs under this class,
so the API, the CLI and the counter page turn any of them into one shape with :meth:`Problem.to_dict`.

One constructor shape everywhere::

    Problem(message, *, zh=None, hint=None, code=None, retryable=None, status=None, **detail)

* ``code``: stable, snake_case, what programs switch on (class default, overridable per instance);
* ``message``: English, for logs, HIS vendors and technicians;
* ``zh``: Chinese from end to end, for the person at the counter or the reviewer; never a Chinese prefix
  glued to an English hint;
* ``hint``: what to do next (Chinese when the clerk reads it, English when a technician does);
* ``retryable``: the same request may succeed later unchanged;
* ``status``: the HTTP status an API answers with;
* ``detail``: structured extras (``tries_left``, ``seq``, …), merged into :meth:`to_dict`.

Subclasses set class attributes (``code``, ``zh``, ``retryable``, ``status``) and add no constructor of
their own unless they need structured arguments; then they call ``super().__init__`` with this shape.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Problem(Exception):
    code: ClassVar[str] = "problem"
    zh: str = "操作未完成，请重试或联系技术支持"
    hint: str = ""
    retryable: bool = False
    status: int = 400

    def __init__(self, message: str, *, zh: str | None = None, hint: str | None = None,
                 code: str | None = None, retryable: bool | None = None, status: int | None = None,
                 **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        if zh is not None:
            self.zh = zh
        if hint is not None:
            self.hint = hint
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance override of the class code
        if retryable is not None:
            self.retryable = retryable
        if status is not None:
            self.status = status
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "zh": self.zh,
                               "retryable": self.retryable}
        if self.hint:
            out["hint"] = self.hint
        out.update(self.detail)
        return out
