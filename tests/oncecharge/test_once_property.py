"""One req, one charge, as a property (hypothesis state machine): two counters and the centre, with
settle / retry (same req, same or other cart) / a late or lost online answer / cancel / replay.

The control flow of each visit is the counter's own visit core (:class:`edge.counter.visit.VisitCore`:
AskCentre -> LookUp -> RunEngine), the same-req check is its :func:`content_conflict`, the centre
settles online with the real engine on its ledger keyed by (device, req) as ``sync.centre.online``
does, and reconciliation is the real pure replay (:func:`sync.centre.replay.replay_person`). The
entry bodies come from the reconciliation tests' edge (real engine, docs/entries.md shapes).

Invariants: each (device, req) moves the person's account and the fund at most once (an online
record, or one accepted settlement outcome, never both); the centre's ledger equals its starting
state minus every settlement that moved money and was not cancelled.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from centre import recon_support as recon  # noqa: E402
from counter.test_visit import ANSWER, prepared  # noqa: E402
from edge.counter import visit as v  # noqa: E402
from edge.settle import parse_catalogue, parse_items, parse_policy, parse_visit, settle  # noqa: E402
from sync.centre import replay as rp  # noqa: E402

POLICY, CATALOGUE = parse_policy(recon.POLICY), parse_catalogue(recon.CATALOGUE)
WORLD_BUNDLES = dict(policies={(3, recon.bundle_hash(recon.POL_RAW)): POLICY},
                     catalogues={(12, recon.bundle_hash(recon.CAT_RAW)): CATALOGUE})
CARTS = [recon.ITEMS,
         [{"code": "XJ01CAA040E001010101445", "cnt": "5", "pric": 1280},
          {"code": "001102000010000", "cnt": "1", "pric": 1000}],
         [{"code": "XC10AAA126A001010100971", "cnt": "3", "pric": 2345}]]
DEVICES = ("D-A", "D-B")
REQS = ("R1", "R2", "cancel:1", "R3")
FATES = ("answer", "late", "late_and_lookup_lost", "down")
START = dict(balc=50000, deductible_used=20000, fund_paid=0)
MONEY_CODES_NOT_MOVING = {"online_confirmed", "already_settled_online"}


class OneVisitOneCharge(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = rp.Ledger("P0001", "310", "working", **START)
        self.onlines: dict[tuple[str, str], dict] = {}            # the centre's online records
        self.journals: dict[str, list[tuple[int, str, dict]]] = {d: [] for d in DEVICES}
        self.world = rp.StaticWorld(**WORLD_BUNDLES, onlines=self.onlines)
        self.done: set = set()
        self.outcomes: list[rp.Outcome] = []
        self.clock = recon.T0
        self.visit = recon.visit(0)

    # -- the centre's online settlement (as sync.centre.online.settle_online) --------------------
    def _centre_settle(self, device: str, req: str, cart: int) -> dict | None:
        """The centre's record for (device, req); None = the same req with another cart (req_conflict)."""
        rec = self.onlines.get((device, req))
        if rec is not None:
            return rec if rec["cart"] == cart else None
        before = self.ledger.person(dt.date.fromisoformat(self.visit["date"]))
        s = settle(POLICY, CATALOGUE, before, parse_visit(self.visit, POLICY), parse_items(copy.deepcopy(CARTS[cart])))
        self.ledger = replace(self.ledger, balc=self.ledger.balc - s.acct_pay,
                              deductible_used=self.ledger.deductible_used + s.act_pay_dedc,
                              fund_paid=self.ledger.fund_paid + s.hifp_pay)
        snapshot = recon.person("P0001", balc=before.balc, deductible_used=before.deductible_used,
                                fund_paid=before.fund_paid)
        rec = {"cart": cart, "snapshot": snapshot,
               "accepted": {"medfee": s.medfee_sumamt, "fund": s.hifp_pay, "acct": s.acct_pay,
                            "cash": s.psn_cash_pay, "dedc": s.act_pay_dedc}}
        self.onlines[(device, req)] = rec
        return rec

    def _append(self, device: str, kind: str, body: dict) -> None:
        j = self.journals[device]
        self.clock += 1000
        j.append((len(j) + 1, kind, body))

    # -- rules ----------------------------------------------------------------------------------
    @rule(device=st.sampled_from(DEVICES), req=st.sampled_from(REQS), cart=st.integers(0, len(CARTS) - 1),
          fate=st.sampled_from(FATES))
    def settle(self, device, req, cart, fate):
        """A visit (or a retry of one: the same req again, with the same or another cart)."""
        for _, kind, body in self.journals[device]:
            if body.get("req") == req:     # journaled before: the first answer, or a conflict; nothing new
                request = {"med_type": body["visit"]["med_type"],
                           "items": [{"med_list_codg": i["code"], "cnt": i["cnt"], "pric": i["pric"]}
                                     for i in CARTS[cart]]}
                conflict = v.content_conflict(request, kind, body)
                assert (conflict is None) == (body["items"] == CARTS[cart])
                return
        core = v.VisitCore()
        action = core.handle(v.Identified(prepared(centre=fate != "down")))
        rec = None
        while not action.final:
            if isinstance(action, v.ConfirmCard):
                event: v.Event = v.CardConfirmed()
            elif isinstance(action, v.AskCentre):
                if fate == "down":
                    event = v.CentreFailed("connection refused", sent=False)
                else:
                    rec = self._centre_settle(device, req, cart)     # the centre commits (or finds a conflict)
                    if rec is None:
                        event = v.CentreRefused("req_conflict", "other visit")
                    elif fate == "answer":
                        event = v.CentreAnswered(ANSWER)
                    else:
                        event = v.CentreFailed("timeout")            # the answer is late or lost
            elif isinstance(action, v.LookUp):
                event = v.CentreAnswered(ANSWER) if fate == "late" else v.CentreFailed("lookup failed")
            elif isinstance(action, v.RunEngine):
                event = v.Settled(recon.edge_settle(recon.person("P0001"), self.visit, CARTS[cart], acct_limit=50000))
            elif isinstance(action, v.Journal):
                online = action.body["mode"] == "online"
                assert online == (fate in ("answer", "late"))
                body = (recon.settlement_body(rec["snapshot"], self.visit, CARTS[rec["cart"]], mode="online", req=req)
                        if online else recon.settlement_body(recon.person("P0001"), self.visit, CARTS[cart], req=req))
                self._append(device, "settlement", body)
                event = v.Journaled(None)
            else:
                raise AssertionError(action)
            action = core.handle(event)
        if isinstance(action, v.Reject):
            assert action.code == "req_conflict" and rec is None

    @rule(device=st.sampled_from(DEVICES), seq=st.integers(1, 6))
    def cancel(self, device, seq):
        j = self.journals[device]
        if seq > len(j) or j[seq - 1][1] != "settlement":
            return
        if any(kind == "cancel" and body["cancels"] == seq for _, kind, body in j):
            return                        # @cancel:N is the cancel's own req: a second cancel is the first
        a = j[seq - 1][2]["amounts"]
        self._append(device, "cancel", {"req": v.internal_req("cancel", seq), "cancels": seq, "psn_no": "P0001",
                                        "amounts": dict(a), "state_after": {}})

    @rule()
    def replay(self):
        events = [rp.Event(d, seq, kind, recon.T0 + seq * 1000 + i, body)
                  for i, d in enumerate(DEVICES) for seq, kind, body in self.journals[d]]
        self.ledger, outs = rp.replay_person(self.ledger, events, self.world, done=self.done)
        for o in outs:
            self.done.add(o.key)
            self.world.outcomes[o.key] = o
        self.outcomes.extend(outs)

    # -- invariants -----------------------------------------------------------------------------
    def _moves(self) -> dict[tuple[str, str], int]:
        moves: dict[tuple[str, str], int] = {k: 1 for k in self.onlines}
        for o in self.outcomes:
            if o.kind != "settlement" or set(o.codes) & MONEY_CODES_NOT_MOVING:
                continue
            if any(o.accepted[k] for k in ("fund", "acct")):
                req = dict(self.journals[o.device][o.seq - 1][2])["req"]
                moves[(o.device, req)] = moves.get((o.device, req), 0) + 1
        return moves

    @invariant()
    def each_req_moves_the_money_at_most_once(self):
        assert all(n <= 1 for n in self._moves().values()), self._moves()

    @invariant()
    def the_ledger_is_the_settlements_not_cancelled(self):
        acct = fund = 0
        for rec in self.onlines.values():
            acct, fund = acct + rec["accepted"]["acct"], fund + rec["accepted"]["fund"]
        for o in self.outcomes:
            if o.kind == "settlement" and not set(o.codes) & MONEY_CODES_NOT_MOVING:
                acct, fund = acct + o.accepted["acct"], fund + o.accepted["fund"]
            elif o.kind == "cancel":
                acct, fund = acct + o.accepted["acct"], fund + o.accepted["fund"]   # negative: the reversal
        assert self.ledger.balc == START["balc"] - acct
        assert self.ledger.fund_paid == START["fund_paid"] + fund


OneVisitOneCharge.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
test_one_visit_one_charge = OneVisitOneCharge.TestCase
