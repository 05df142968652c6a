"""Errors of the HIS drop-in (the national 两定接口 served on the counter PC).

    Problem (sync.problem)        the one error base of the project
    └── HisError                  base of this package: answered as ``infcode`` -1 with ``err_msg`` = ``zh``
        ├── EnvelopeError         the envelope itself is wrong: garbage JSON, no or unknown infno, no msgid,
        │                         ``input`` not an object
        ├── FieldError            a field of ``input`` is missing or malformed (names the field)
        ├── MoneyError            an amount is not yuan with at most two decimals
        ├── StateError            the transaction does not fit what came before (unknown mdtrt_id, a
        │                         settled visit changed, medfee disagreeing with the uploaded lines, ...)
        ├── MsgidReused           a msgid already answered a different infno
        └── FullPaymentTaken      the visit became a full-payment claim (journaled; carries the claim number)

The counter's own errors (``edge.counter.errors.CounterError``) are answered the same way: every
business error is HTTP 200 with ``infcode`` -1 and a Chinese ``err_msg``, as the national platform does.
"""

from __future__ import annotations

from sync.problem import Problem


class HisError(Problem):
    code = "his_error"
    zh = "交易失败"
    status = 200


class EnvelopeError(HisError):
    code = "bad_envelope"
    zh = "报文格式不正确"


class FieldError(HisError):
    code = "bad_field"
    zh = "交易输入不正确"


class MoneyError(FieldError):
    code = "bad_amount"
    zh = "金额格式不正确：金额以元为单位，最多两位小数"


class StateError(HisError):
    code = "bad_state"
    zh = "交易与之前的业务不符"


class MsgidReused(HisError):
    code = "msgid_reused"
    zh = "报文ID已用于其他交易"


class FullPaymentTaken(HisError):
    """Not a refusal of the request: the visit was journaled as a full-payment claim (the patient pays
    everything in cash). Answered as infcode -1 so that no HIS books a fund payment, and remembered
    under its msgid like a settlement."""

    code = "full_payment"
    zh = "需全额垫付"
