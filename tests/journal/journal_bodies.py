"""Example bodies that follow docs/entries.md (shared by the journal tests)."""

from __future__ import annotations

import hashlib

DEVICE = "D-S330300001-1"


def settlement(req: str = "POS-20261124-0001", *, mode: str = "offline", medfee: int = 2560) -> dict:
    fund = medfee * 7 // 10
    acct = min(3000, medfee - fund)
    return {
        "req": req,
        "mode": mode,
        "psn_no": "33030019800101001X",
        "card": {"card_id": "330300D15600000500", "keyed_in": False},
        "visit": {"med_type": "11", "level": "village", "date": "2026-11-24", "acct_used_flag": True},
        "items": [{"code": "XA01AAA001", "cnt": "2", "pric": medfee // 2}],
        "person": {"insutype": "310", "psn_type": "working", "status": "active", "chronic": [],
                   "balc": 50000, "deductible_used": 20000, "fund_paid": 0},
        "acct_limit": 3000 if mode == "offline" else None,
        "amounts": {"medfee_sumamt": medfee, "fulamt_ownpay_amt": 0, "overlmt_selfpay": 0, "preselfpay_amt": 0,
                    "inscp_scp_amt": medfee, "act_pay_dedc": 0, "hifp_pay": fund, "acct_pay": acct,
                    "psn_cash_pay": medfee - fund - acct},
        "result_sha256": hashlib.sha256(req.encode()).digest()[:16],
        "basis": {
            "catalogue": {"version": 12, "hash": "ab" * 32},
            "policy": {"version": 3, "hash": "cd" * 32, "policy_version": "2026.3"},
            "persons": {"version": 40},
            "hotlist": {"version": 9},
            "limits": {"cache_age_hours": [5, 72], "visit_fund": [fund, 20000], "offline_visits": [1, 5],
                       "acct_allowance_left": [30000, 50000]} if mode == "offline" else None,
        },
    }


def cancel(req: str, cancels: int) -> dict:
    return {"req": req, "cancels": cancels, "psn_no": "33030019800101001X",
            "amounts": {k: 0 for k in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                       "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")},
            "state_after": {"balc": 50000, "deductible_used": 20000, "fund_paid": 0}}


def claim(req: str, *, cause: str = "offline_limit") -> dict:
    return {"req": req, "cause": cause, "detail": "visit_fund 25000 > 20000",
            "psn_no": None, "certno": "330301198001010011",
            "card": {"card_id": None, "keyed_in": True},
            "visit": {"med_type": "11", "level": "village", "date": "2026-11-24", "acct_used_flag": False},
            "items": [{"code": "XA01AAA001", "cnt": "0.5", "pric": 5000}],
            "paid": {"medfee_sumamt": 2500, "acct_pay": 0, "psn_cash_pay": 2500},
            "basis": {"catalogue": {"version": 12, "hash": "ab" * 32},
                      "policy": {"version": 3, "hash": "cd" * 32, "policy_version": "2026.3"},
                      "persons": None, "hotlist": {"version": 9}, "limits": None}}


def note(what: str = "hello") -> dict:
    return {"what": what}
