"""Errors of the centre service: one tree under :class:`sync.errors.SyncError` (and so under
:class:`sync.problem.Problem`), each class with a stable ``code``, an HTTP ``status`` and Chinese ``zh``.

::

    Problem (sync.problem)
    └── SyncError (sync.errors)              the contract's tree; the centre's handlers catch it
        └── CentreError                      centre_error         base of the centre
            ├── LedgerError                  ledger_error         an operation on the person ledger was refused
            │   ├── UnknownPerson            unknown_person       (404) not in the centre's ledger
            │   └── BadOperation             bad_operation        bad amount, date, or nothing to do
            ├── ReviewError                  review_error         the claims queue / disputed settlements
            │   ├── ClaimNotFound            claim_not_found      (404) no such claim number
            │   ├── ClaimDecided             claim_decided        (409) already approved or denied
            │   ├── ClaimNotComputable       claim_not_computable (409) the engine cannot compute it
            │   ├── SettlementNotUnderReview not_under_review     (404) no disputed settlement with that device/seq
            │   └── SettlementDecided        settlement_decided   (409) a reviewer already decided it
            ├── AccountError                 account_error        reviewer accounts and sessions
            │   ├── NotLoggedIn              not_logged_in        (401) no session, or it expired
            │   ├── BadLogin                 bad_login            (401) unknown name or wrong password
            │   ├── WrongRole                wrong_role           (403) the account's role may not do this
            │   └── BadAccount               bad_account          a new account's name, role or password is invalid
            ├── OnlineRefused                online_refused       (409) no online settlement; code says what instead
            ├── ClaimError                   claim_error          the pure core cannot compute a claim's reimbursement
            ├── Refusal                      (rule code)          the pure core's rule table matched (internal)
            ├── ReportError                  bad_report_request   a report was asked for with bad arguments
            ├── SourceError                  bad_source           a publish source file is invalid
            ├── KeyFileError                 centre_key_unreadable the bundle-signing key file is unreadable
            ├── BackupError                  bad_backup           a backup not written or verified; restore refused
            └── LimitError                   limit_error          one caller asked for more than its share (retryable)
                ├── Busy                     busy                 (503) the worker's bound, or this address's share
                └── RateLimited              rate_limited         (429) too many enrolments or logins from this address

Every class takes Problem's one constructor shape ``(message, *, zh=None, hint=None, code=None,
retryable=None, status=None, **detail)``; only :class:`Refusal` adds structured arguments (the pure
core's outcome and differences) and passes them on in that shape. ``message`` is English for the
operator's log; ``zh`` is what a reviewer reads, Chinese end to end.
"""

from __future__ import annotations

from typing import Any, Mapping

from sync.errors import SyncError


class CentreError(SyncError):
    code = "centre_error"
    zh = "医保中心处理失败，请稍后重试或联系技术支持"


# ------------------------------------------------------------------------------------ ledger ---
class LedgerError(CentreError):
    """An operation on the ledger was refused; ``code`` says why, the message what to do."""

    code = "ledger_error"
    zh = "参保人账户操作未完成"


class UnknownPerson(LedgerError):
    code = "unknown_person"
    zh = "医保中心没有该参保人，请先导入参保人资料"
    status = 404


class BadOperation(LedgerError):
    code = "bad_operation"
    zh = "操作无效，请检查金额、日期或参保人状态"


# ------------------------------------------------------------------------------------ review ---
class ReviewError(CentreError):
    code = "review_error"
    zh = "审核操作未完成"


class ClaimNotFound(ReviewError):
    code = "claim_not_found"
    zh = "没有这个报销申请编号，请核对小票上的编号"
    status = 404


class ClaimDecided(ReviewError):
    code = "claim_decided"
    zh = "该报销申请已经处理过，无需再次处理"
    status = 409


class ClaimNotComputable(ReviewError):
    code = "claim_not_computable"
    zh = "该报销申请无法计算，请驳回并注明原因，或修正参保人资料后再批准"
    status = 409


class SettlementNotUnderReview(ReviewError):
    code = "not_under_review"
    zh = "该结算不在审核中"
    status = 404


class SettlementDecided(ReviewError):
    code = "settlement_decided"
    zh = "该结算已由审核员处理过"
    status = 409


# ---------------------------------------------------------------------------------- accounts ---
class AccountError(CentreError):
    code = "account_error"
    zh = "审核员账户操作未完成"
    status = 401


class NotLoggedIn(AccountError):
    code = "not_logged_in"
    zh = "请先登录（会话不存在或已过期）"
    status = 401


class BadLogin(AccountError):
    code = "bad_login"
    zh = "用户名或密码错误"
    status = 401


class WrongRole(AccountError):
    code = "wrong_role"
    zh = "您的角色无权执行此操作"
    status = 403


class BadAccount(AccountError):
    code = "bad_account"
    zh = "账户信息无效：名称1至64个字符，密码至少8个字符，角色为审核员或稽核员"
    status = 400


# ------------------------------------------------------------------------------------- other ---
class OnlineRefused(CentreError):
    """The centre will not settle this visit online; ``code`` tells the counter what to do instead."""

    code = "online_refused"
    zh = "医保中心不能联网结算本次就诊，请按离线或全自费处理"
    status = 409


class ClaimError(CentreError):
    code = "claim_error"
    zh = "无法计算该报销申请的基金支付金额"


class Refusal(CentreError):
    """Internal to the pure core: a rule of its table matched before the engine could run."""

    code = "refused"
    zh = "对账规则拒绝了这条记录"

    def __init__(self, outcome: str, code: str, reason: str, differs: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason, code=code, outcome=outcome)
        self.outcome, self.reason, self.differs = outcome, reason, dict(differs or {})


class ReportError(CentreError):
    code = "bad_report_request"
    zh = "对账报表参数有误，日期格式为 年-月-日"


class SourceError(CentreError):
    code = "bad_source"
    zh = "发布的源数据文件有误，请修正后重新发布"


class KeyFileError(CentreError):
    code = "centre_key_unreadable"
    zh = "医保中心的签名密钥文件无法读取，请从备份恢复"


class BackupError(CentreError):
    code = "bad_backup"
    zh = "备份文件无法校验或恢复条件不满足，未做任何恢复"


# ------------------------------------------------------------------------------------ limits ---
class LimitError(CentreError):
    """Refused by sync.centre.limits before the route ran: try again later, unchanged."""

    code = "limit_error"
    retryable = True


class Busy(LimitError):
    code = "busy"
    zh = "医保中心繁忙，请稍后重试（未上传的记录仍保存在本机）"
    status = 503


class RateLimited(LimitError):
    code = "rate_limited"
    zh = "请求过于频繁，请稍后再试"
    status = 429
