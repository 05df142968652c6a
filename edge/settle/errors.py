"""Refusals of the settlement engine.

    SettlementError            base; ``code`` is stable and part of the CLI/API contract
    ├── InvalidInput           invalid_input: the request itself is malformed (fix the data, retry)
    ├── NoPolicyRule           no_policy_rule: policy has no rule for this person and visit kind
    ├── NoChronicFiling        no_chronic_filing: med_type 14 without a matching chronic filing
    └── CannotCancel           cannot_cancel: the state no longer allows reversing this settlement

Every error carries a ``message`` a clerk can act on and, where useful, the ``field`` at fault.
None of them is retryable as is: the same input gives the same refusal (the engine is pure).
"""

from __future__ import annotations


class SettlementError(Exception):
    code = "settlement_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class InvalidInput(SettlementError):
    code = "invalid_input"


class NoPolicyRule(SettlementError):
    code = "no_policy_rule"


class NoChronicFiling(SettlementError):
    code = "no_chronic_filing"


class CannotCancel(SettlementError):
    code = "cannot_cancel"
