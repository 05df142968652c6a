"""Errors of the counter service: what the API answers and the page shows.

    Problem (sync.problem)        the one error base of the project
    └── CounterError              base of this package: ``code``, ``message`` (English, logs/HIS), ``zh``
        │                         (the clerk, Chinese end to end), ``status`` (HTTP), ``detail`` (extras)
        ├── BadRequest            invalid_input / unknown_item / ...: fix the request and send it again
        ├── CardProblem           no_card, card_removed, card_changed, wrong_pin, ... (from edge.card)
        ├── Refused               card_hotlisted, card_expired, pin_blocked, unknown_person (journaled)
        ├── FullPaymentRequired   full_payment_required: the visit can only be a full-payment claim
        ├── NotFullPayment        not_full_payment: a claim was asked for a visit that settles normally
        ├── NotReady              cache_empty: no policy/catalogue yet (connect to the centre once)
        ├── JournalUnavailable    journal_*: the journal cannot be written; settlement is stopped
        └── VisitOrderError       visit_order: the visit core got an event its state does not take (a bug;
                                  defined in edge.counter.visit)

Engine refusals (``edge.settle.SettlementError``) and card errors (``edge.card.CardError``) are mapped
to these at the service boundary so the API has one shape: ``{"error": {"code", "message", "zh", ...}}``.

Every class takes ``Problem``'s one constructor shape ``(message, *, zh=None, hint=None, code=None,
retryable=None, status=None, **detail)`` and sets only class defaults here.
"""

from __future__ import annotations

from sync.problem import Problem


class CounterError(Problem):
    code = "counter_error"
    zh = "操作未完成，请重试或联系技术人员"
    status = 400


class BadRequest(CounterError):
    code = "invalid_input"
    zh = "请求数据不正确，请核对后重新提交"
    status = 422


class CardProblem(CounterError):
    code = "card_error"
    zh = "读卡出错，请重新插卡"
    status = 409


class Refused(CounterError):
    code = "refused"
    zh = "不能结算"
    status = 409


class FullPaymentRequired(CounterError):
    code = "full_payment_required"
    zh = "需全额垫付"
    status = 409


class NotFullPayment(CounterError):
    code = "not_full_payment"
    zh = "本次可以正常结算，无需全额垫付"
    status = 409


class NotReady(CounterError):
    code = "cache_empty"
    zh = "本机尚未下载医保目录和政策，请联网等待首次同步后再结算"
    status = 503


class JournalUnavailable(CounterError):
    code = "journal_unavailable"
    zh = "日志无法写入，已停止结算，请联系技术人员"
    status = 503
