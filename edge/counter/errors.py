"""Errors of the counter service: what the API answers and the page shows.

    CounterError                  base: ``code``, ``message`` (English, logs/HIS), ``zh`` (the clerk),
    │                             ``status`` (HTTP), ``detail`` (structured extras)
    ├── BadRequest                invalid_input / unknown_item / ...: fix the request and send it again
    ├── CardProblem               no_card, card_removed, card_changed, wrong_pin, ... (from edge.card)
    ├── Refused                   card_hotlisted, card_expired, pin_blocked, unknown_person (journaled)
    ├── FullPaymentRequired       full_payment_required: the visit can only be a full-payment claim
    ├── NotFullPayment            not_full_payment: a claim was asked for a visit that settles normally
    ├── NotReady                  cache_empty: no policy/catalogue yet (connect to the centre once)
    └── JournalUnavailable        journal_*: the journal cannot be written; settlement is stopped

Engine refusals (``edge.settle.SettlementError``) and card errors (``edge.card.CardError``) are mapped
to these at the service boundary so the API has one shape: ``{"error": {"code", "message", "zh", ...}}``.
"""

from __future__ import annotations

from typing import Any


class CounterError(Exception):
    code = "counter_error"
    status = 400

    def __init__(self, message: str, zh: str, *, code: str | None = None, status: int | None = None,
                 **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.zh = zh
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "zh": self.zh, **self.detail}


class BadRequest(CounterError):
    code = "invalid_input"
    status = 422


class CardProblem(CounterError):
    code = "card_error"
    status = 409


class Refused(CounterError):
    code = "refused"
    status = 409


class FullPaymentRequired(CounterError):
    code = "full_payment_required"
    status = 409


class NotFullPayment(CounterError):
    code = "not_full_payment"
    status = 409


class NotReady(CounterError):
    code = "cache_empty"
    status = 503


class JournalUnavailable(CounterError):
    code = "journal_unavailable"
    status = 503
