"""Refusals of the settlement engine.

    sync.problem.Problem
    └── SettlementError        settlement_error: base; ``code`` is stable and part of the CLI/API contract
        ├── InvalidInput       invalid_input: the request itself is malformed (fix the data, retry)
        ├── NoPolicyRule       no_policy_rule: policy has no rule for this person and visit kind
        ├── NoChronicFiling    no_chronic_filing: med_type 14 without a matching chronic filing
        └── CannotCancel       cannot_cancel: the state no longer allows reversing this settlement

Every error carries a ``message`` (English, naming what is wrong), a ``zh`` the clerk reads (Chinese
from end to end) and, where useful, the ``field`` at fault. None of them is retryable as is: the same
input gives the same refusal (the engine is pure). ``sync.problem`` is the shared contract root, itself
pure, so depending on it keeps the engine free of I/O.
"""

from __future__ import annotations

from typing import Any

from sync.problem import Problem


class SettlementError(Problem):
    code = "settlement_error"
    zh = "无法结算，请核对就诊信息"
    retryable = False
    status = 422

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        # ``field`` goes into the detail only when known, so to_dict() names it exactly when it is set.
        if field is not None:
            kw["field"] = field
        super().__init__(message, **kw)
        self.field = field


class InvalidInput(SettlementError):
    code = "invalid_input"
    zh = "结算数据不正确，请核对后重新提交"
    status = 400


class NoPolicyRule(SettlementError):
    code = "no_policy_rule"
    zh = "政策中没有适用于此类就诊的规则，请检查就诊类型"


class NoChronicFiling(SettlementError):
    code = "no_chronic_filing"
    zh = "没有有效的门诊慢特病备案，请按普通门诊结算或先办理备案"


class CannotCancel(SettlementError):
    code = "cannot_cancel"
    zh = "这笔结算已不能撤销"
    status = 409
