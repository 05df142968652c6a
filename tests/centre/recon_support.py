"""Plays the edge for reconciliation tests: real bundles, the real engine, real signed entries.

Bodies follow docs/entries.md exactly; amounts and ``result_sha256`` come from ``edge.settle`` on
the state the (simulated) counter holds, so what the centre replays is what a counter would send.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from edge.journal.entry import GENESIS, Entry, make_entry
from edge.settle import parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle
from sync import bundles

T0 = 1_795_046_400_000          # 2026-11-19 00:00 UTC (ms); tests add days to it
DAY = 86_400_000
KEY = SigningKey(bytes(range(32)))

RULES = [
    {"insutype": "310", "psn_type": "working", "med_type": "11", "level": "village", "deductible": 20000,
     "ratio": "0.70", "annual_cap": 220000, "visit_cap": None, "acct_allowed": True},
    {"insutype": "310", "psn_type": "retired", "med_type": "11", "level": "village", "deductible": 10000,
     "ratio": "0.75", "annual_cap": 260000, "visit_cap": None, "acct_allowed": True},
    {"insutype": "310", "psn_type": "working", "med_type": "41", "level": "pharmacy", "deductible": 0,
     "ratio": "0.50", "annual_cap": 100000, "visit_cap": 20000, "acct_allowed": True},
    {"insutype": "390", "psn_type": "working", "med_type": "11", "level": "village", "deductible": 0,
     "ratio": "0.55", "annual_cap": 80000, "visit_cap": None, "acct_allowed": False},
    {"insutype": "310", "psn_type": "working", "med_type": "13", "level": "township", "deductible": 30000,
     "ratio": "0.60", "annual_cap": 220000, "visit_cap": None, "acct_allowed": True},
]
OFFLINE = {"max_offline_hours": 96, "offline_visit_fund_cap": 20000, "offline_max_visits": 5,
           "offline_acct_allowance": 50000}
POLICY = {"version": "2026.3", "rules": RULES, "offline": OFFLINE}
CATALOGUE = {"items": [
    {"code": "XJ01CAA040E001010101445", "name": "阿莫西林胶囊 0.25g*24", "class": "A", "begndate": "2026-01-01"},
    {"code": "XC10AAA126A001010100971", "name": "阿托伐他汀钙片 20mg*7", "class": "B", "begndate": "2026-01-01",
     "selfpay_prop": "0.05"},
    {"code": "001102000010000", "name": "门诊诊查费(村卫生室)", "class": "A", "begndate": "2026-01-01",
     "pric_uplmt_amt": 1000},
    {"code": "120400001", "name": "静脉注射", "class": "A", "begndate": "2026-01-01", "pric_uplmt_amt": 600},
    {"code": "HEALTH-SUPP-0001", "name": "维生素C咀嚼片(保健品)", "class": "C", "begndate": "2026-01-01"},
]}


def person(psn_no: str, **over) -> dict:
    """A person snapshot as the persons bundle carries it."""
    base = {"psn_no": psn_no, "certno": "33030019800101" + psn_no[-4:], "card_ids": [f"330300D156{psn_no[-8:]}"],
            "insutype": "310", "psn_type": "working", "status": "active", "chronic": [], "balc": 50000,
            "deductible_used": 20000, "fund_paid": 0, "pending_review": False}
    base.update(over)
    return base


PERSONS = [person("P0001"), person("P0002", deductible_used=0), person("P0003", balc=30000),
           person("P0004"), person("P0005", insutype="390", balc=0)]


def built(kind: str, version: int, payload: dict, created: int = T0 - DAY) -> bytes:
    return bundles.build(KEY, kind=kind, version=version, payload=payload, created=created)


def bundle_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


CAT_RAW = built("catalogue", 12, CATALOGUE)
POL_RAW = built("policy", 3, POLICY)
PERSONS_RAW = built("persons", 40, {"persons": PERSONS})
HOT_RAW = built("hotlist", 9, {"cards": []})


def basis(*, limits: dict | None = None, cat_raw: bytes = CAT_RAW, pol_raw: bytes = POL_RAW) -> dict:
    return {"catalogue": {"version": 12, "hash": bundle_hash(cat_raw)},
            "policy": {"version": 3, "hash": bundle_hash(pol_raw), "policy_version": "2026.3"},
            "persons": {"version": 40}, "hotlist": {"version": 9}, "limits": limits or {}}


def visit(day: int = 0, med_type: str = "11", level: str = "village", acct: bool = True, **extra) -> dict:
    import datetime as dt
    d = dt.date(2026, 11, 19) + dt.timedelta(days=day)
    return {"med_type": med_type, "level": level, "date": d.isoformat(), "acct_used_flag": acct, **extra}


ITEMS = [{"code": "XJ01CAA040E001010101445", "cnt": "2", "pric": 1280},
         {"code": "001102000010000", "cnt": "1", "pric": 1000}]


def edge_settle(snapshot: dict, v: dict, items: list, *, acct_limit=None):
    """The edge's own settlement with the real engine on its cached state."""
    policy = parse_policy(POLICY)
    cat = parse_catalogue(CATALOGUE)
    p = parse_person({k: snapshot[k] for k in ("psn_no", "insutype", "psn_type", "status", "chronic", "balc",
                                                "deductible_used", "fund_paid")})
    return settle(policy, cat, p, parse_visit(v, policy), parse_items(items), acct_limit=acct_limit)


def settlement_body(snapshot: dict, v: dict, items: list | None = None, *, mode: str = "offline",
                    acct_limit: int | None = 50000, req: str = "POS-1", card_id: str | None = None,
                    keyed_in: bool = False, offline_visits: int = 1, tamper: dict | None = None) -> dict:
    items = copy.deepcopy(items or ITEMS)
    if mode == "online":
        acct_limit = None
    s = edge_settle(snapshot, v, items, acct_limit=acct_limit)
    amounts = {k: getattr(s, k) for k in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                          "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")}
    limits = {}
    if mode == "offline":
        limits = {"cache_age_hours": [5, 96], "visit_fund": [s.hifp_pay, 20000],
                  "offline_visits": [offline_visits, 5], "acct_allowance_left": [acct_limit, 50000]}
    body = {
        "req": req, "mode": mode, "psn_no": snapshot["psn_no"],
        "card": {"card_id": card_id or snapshot["card_ids"][0], "keyed_in": keyed_in},
        "visit": v, "items": items,
        "person": {k: snapshot[k] for k in ("insutype", "psn_type", "status", "chronic", "balc",
                                            "deductible_used", "fund_paid")},
        "acct_limit": acct_limit, "amounts": amounts,
        "result_sha256": hashlib.sha256(s.to_json().encode()).digest()[:16],
        "basis": basis(limits=limits),
    }
    if tamper:
        body["amounts"] = {**amounts, **tamper}
    return body


def claim_body(snapshot: dict | None, v: dict, cause: str, items: list | None = None, *, req: str = "POS-C",
               detail: str = "", certno: str | None = None, keyed_in: bool = False, acct: int = 0) -> dict:
    items = copy.deepcopy(items or ITEMS)
    from edge.settle import round_fen
    from decimal import Decimal
    medfee = sum(round_fen(Decimal(it["cnt"]) * it["pric"]) for it in items)
    return {"req": req, "cause": cause, "detail": detail or cause,
            "psn_no": snapshot["psn_no"] if snapshot and not keyed_in else None,
            "certno": certno if certno is not None else (snapshot["certno"] if keyed_in and snapshot else None),
            "card": {"card_id": None if keyed_in else (snapshot or {}).get("card_ids", [None])[0], "keyed_in": keyed_in},
            "visit": v, "items": items,
            "paid": {"medfee_sumamt": medfee, "acct_pay": acct, "psn_cash_pay": medfee - acct},
            "basis": basis()}


@dataclass
class Device:
    """A counter's journal in memory: real signed, hash-chained entries."""

    device: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    entries: list[Entry] = field(default_factory=list)

    def append(self, kind: str, body: dict, *, time: int) -> Entry:
        seq, prev = (self.entries[-1].seq, self.entries[-1].hash) if self.entries else (0, GENESIS)
        e = make_entry(self.key, seq=seq + 1, prev=prev, device=self.device, time=time,
                       mono=(seq + 1) * 1_000_000, kind=kind, body=body)
        self.entries.append(e)
        return e

    def items(self, start: int = 1) -> list[tuple[int, bytes]]:
        return [(e.seq, e.raw) for e in self.entries[start - 1:]]


# ------------------------------------------------------------------ a played edge on loopback ---
class PlayedEdge:
    """One counter: enrolled over HTTP, the real journal store, the real uplink, a downlink inbox.

    It is not the edge daemon: it journals bodies built with the real engine (``settlement_body``)
    where the daemon would journal what its counter decided, and it collects what the uplink
    delivers (``inbox``) where the daemon would show it on the counter page.
    """

    def __init__(self, cfg, journal, uplink, state):
        self.cfg, self.journal, self.uplink, self.state = cfg, journal, uplink, state
        self.inbox: list[dict] = []

    @property
    def device(self) -> str:
        return self.cfg.device

    @classmethod
    async def enrol(cls, centre, http, tmp_path, site: str) -> "PlayedEdge":
        import trio
        from edge.enrol import enroll
        from edge.journal.keys import load_device_key
        from edge.journal.store import JournalStore
        from edge.uplink import CentreClient, Uplink

        token = await trio.to_thread.run_sync(centre.store.create_enrol_token, site)
        state = tmp_path / f"edge-{site}"
        cfg = await enroll(centre.url, token, state, client=http)
        key = load_device_key(state / "device.key")
        journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)
        client = CentreClient(centre.url, cfg.device, key, client=http)
        edge = cls(cfg, journal, None, state)

        async def on_downlink(m):
            if m["kind"] in ("outcome", "reimbursement"):
                edge.inbox.append(m)

        edge.uplink = Uplink(journal, client, state_dir=state, on_downlink=on_downlink)
        edge.key = key
        edge.http = http
        edge.url = centre.url
        return edge

    async def journal_entry(self, kind: str, body: dict, *, time: int):
        import trio
        return await trio.to_thread.run_sync(lambda: self.journal.append(kind, body, time_ms=time, mono_ns=time))

    async def sync(self):
        return await self.uplink.sync_once()

    def messages(self, kind: str) -> list[dict]:
        return [m["payload"] for m in self.inbox if m["kind"] == kind]

    async def online_settle(self, data: dict):
        """POST /v1/online/settle signed with the device key, as the counter does."""
        import json
        from sync import auth
        from edge.uplink import wall_ms

        body = json.dumps(data).encode()
        headers = auth.sign_request(self.key, self.device, "POST", "/v1/online/settle", body, time_ms=wall_ms())
        headers["content-type"] = "application/json"
        return await self.http.post(self.url + "/v1/online/settle", content=body, headers=headers)


def counter_text(payload: dict) -> str:
    """What the counter page shows for a reimbursement message (the daemon's wording)."""
    from edge.settle import yuan
    return f"reimbursement of ¥{yuan(payload['amount'])} approved for claim {payload['claim_no']}"
