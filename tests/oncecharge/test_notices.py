"""Every notice states what actually happened (issue 13, finding 5): no "已退还" unless money moved, and
the counter's own journal entries (notices, cancels) use reqs no caller can send."""

from __future__ import annotations

from edge.counter import visit as v
from edge.counter.downlink import notice_text


def test_a_credit_not_yet_paid_is_not_announced_as_refunded():
    zh = notice_text("outcome", {"ref_seq": 3, "outcome": "adjusted", "credit": 14000})
    assert "已退还" not in zh and "¥140.00" in zh and "尚未支付" in zh


def test_a_credit_put_into_the_account_says_so_with_the_new_balance():
    zh = notice_text("outcome", {"ref_seq": 3, "outcome": "adjusted", "credit": 14000, "credited_to": "account",
                                 "to_account": 14000, "balc": 64000})
    assert "已退回个人账户" in zh and "¥140.00" in zh and "¥640.00" in zh and "待柜台" not in zh


def test_a_cash_credit_is_owed_at_the_counter_under_its_payout_number():
    zh = notice_text("outcome", {"ref_seq": 3, "outcome": "adjusted", "credit": 14000, "credited_to": "payout",
                                 "payout": 14000, "payout_no": "P-D-1-3"})
    assert "待柜台退还" in zh and "P-D-1-3" in zh and "已退还" not in zh and "个人账户" not in zh


def test_notice_and_cancel_reqs_are_in_the_counters_key_space():
    assert v.internal_req("downlink", 7) == "@downlink:7" and v.internal_req("cancel", 1) == "@cancel:1"
    assert not v.caller_req_ok("@downlink:7") and v.caller_req_ok("downlink:7")
