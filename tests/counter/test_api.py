"""Every endpoint of the local counter API, through the real server on loopback, including bad input.

These tests use the simulated card desk (the demo's stand-in); the card path through pcscd + vpcd +
the virtual card is exercised in test_api_card.py and the browser tests.
"""

from __future__ import annotations

import socket

import httpx
import pytest
import trio

from counter.conftest import insert_card
from counter.helpers import AMOXICILLIN, ATORVASTATIN, CARD_ID, HOTLISTED, PERSONS
from edge.counter import build_app, serve
from edge.journal import verify_entries

VISIT = {"med_type": "11", "acct_used_flag": False, "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


def visit(req, **kw):
    return {"req": req, **VISIT, **kw}


async def test_status_reports_cache_backlog_and_mode(api):
    s = (await api.get("/api/status")).json()
    assert s["online"] is False and s["backlog"]["count"] == 0
    assert set(s["cache"]["bundles"]) == {"catalogue", "policy", "persons", "hotlist"}
    # The fixture marked the cache fresh just before the server started; on a loaded machine that start
    # can take a second or two of real time, and age_s is whole seconds of the real clock.
    assert 0 <= s["cache"]["age_s"] <= 2 and s["journal"]["ok"] is True and s["simulated_card"] is True


async def test_item_search(api):
    r = await api.get("/api/items", params={"q": "amxl"})
    assert r.status_code == 200 and r.json()["items"][0]["med_list_codg"] == AMOXICILLIN
    assert r.json()["items"][0]["name"].startswith("阿莫西林")
    assert (await api.get("/api/items", params={"q": "amxl", "limit": "0"})).status_code == 422
    assert (await api.get("/api/items", params={"q": "x" * 65})).status_code == 422


async def test_card_status_without_and_with_card(api, cards):
    r = (await api.get("/api/card")).json()
    assert r["present"] is False and r["error"]["code"] == "no_card"
    insert_card(cards)
    r = (await api.get("/api/card")).json()
    assert r["present"] is True and r["card"]["card_id"] == CARD_ID and r["person"]["psn_no"] == "P0001"
    assert r["person"]["balc"] == 50000 and r["hotlisted"] is None


async def test_presettle_offline_shows_split_and_journals_nothing(api, cards, journal):
    insert_card(cards)
    r = await api.post("/api/presettle", json=VISIT)
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["mode"] == "offline"
    s = q["setlinfo"]
    assert s["medfee_sumamt"] == 7035 and s["medfee_sumamt"] == s["hifp_pay"] + s["acct_pay"] + s["psn_cash_pay"]
    assert {x["code"] for x in q["reasons"]} >= {"deductible", "ratio", "cash"}
    assert q["decision"]["limits"]["cache_age_hours"] == [1, 72]  # rounded up: conservative
    assert journal.count() == 0


async def test_settle_offline_journals_one_signed_entry_and_receipt(api, cards, journal):
    insert_card(cards)
    r = await api.post("/api/settle", json=visit("POS-1"))
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["seq"] == 1 and rec["mode"] == "offline" and len(rec["digest"]) == 12
    e = journal.get(1)
    assert e.kind == "settlement" and e.body["mode"] == "offline" and e.body["basis"]["persons"] == {"version": 1}
    assert e.body["basis"]["limits"]["visit_fund"][1] == 20000
    assert verify_entries(journal.raw_entries(), journal.verify_key).ok
    got = (await api.get("/api/receipt/1")).json()
    assert got["digest"] == rec["digest"] and got["qr"] == f"SSJ1:{journal.device}:1:{rec['digest']}"
    svg = await api.get("/api/receipt/1/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
    page = await api.get("/receipt/1")
    assert "脱机结算" in page.text and rec["digest"] in page.text


async def test_double_submitted_settle_is_one_entry(api, cards, journal):
    insert_card(cards)
    answers = []

    async def submit():
        answers.append(await api.post("/api/settle", json=visit("POS-DUP")))

    async with trio.open_nursery() as n:
        n.start_soon(submit)
        n.start_soon(submit)
    answers.append(await api.post("/api/settle", json=visit("POS-DUP")))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.json()["seq"] for a in answers} == {1}
    assert journal.count() == 1


@pytest.mark.parametrize("body,code,field", [
    (visit("B1", items=[{"med_list_codg": "NOPE", "cnt": "1", "pric": 100}]), "unknown_item", "items[0].med_list_codg"),
    (visit("B2", items=[{"med_list_codg": AMOXICILLIN, "cnt": "-1", "pric": 100}]), "invalid_input", "items[0].cnt"),
    (visit("B3", items=[{"med_list_codg": AMOXICILLIN, "cnt": "0", "pric": 100}]), "invalid_input", "items[0].cnt"),
    (visit("B4", items=[{"med_list_codg": AMOXICILLIN, "cnt": "1", "pric": 12.5}]), "invalid_input", "items[0].pric"),
    (visit("B5", items=[]), "invalid_input", "items"),
    (visit("B6", med_type="99"), "invalid_input", "med_type"),
    ({**VISIT}, "invalid_input", "req"),
    (visit("B7", pin="12ab"), "invalid_input", "pin"),
    (visit("B8", items=[{"med_list_codg": AMOXICILLIN, "cnt": "1", "pric": "100"}]), "invalid_input", "items[0].pric"),
    (visit("B9", items=[{"med_list_codg": AMOXICILLIN, "cnt": "1", "pric": True}]), "invalid_input", "items[0].pric"),
    (visit("B10", items=[{"med_list_codg": " "}]), "invalid_input", "items[0].med_list_codg"),
    (visit("B11", keyed_in={"card_no": "A1"}), "invalid_input", "keyed_in"),
    (visit("B12", acct_used_flag="yes"), "invalid_input", "acct_used_flag"),
    (visit("x" * 65), "invalid_input", "req"),
])
async def test_bad_input_is_refused_clearly_and_journals_nothing(api, cards, journal, body, code, field):
    insert_card(cards)
    r = await api.post("/api/settle", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["field"] == field and err["message"] and err["zh"]
    if code == "invalid_input":  # (unknown_item names the code the clerk typed)
        assert not any("a" <= ch.lower() <= "z" for ch in err["zh"]), err["zh"]  # Chinese end to end
    assert journal.count() == 0


async def test_not_json_and_wrong_content_type(api):
    r = await api.post("/api/settle", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    r = await api.post("/api/settle", content=b"req=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


async def test_card_removed_before_confirm_journals_nothing(api, cards, journal):
    insert_card(cards)
    assert (await api.post("/api/presettle", json=VISIT)).status_code == 200
    cards.remove()
    r = await api.post("/api/settle", json=visit("POS-RM", card_id=CARD_ID))
    assert r.status_code == 409 and r.json()["error"]["code"] in ("no_card", "card_removed")
    assert journal.count() == 0


async def test_card_swapped_before_confirm_journals_nothing(api, cards, journal):
    insert_card(cards, card_id="330300D15600000500BF7A0D1C5E0003", certno=PERSONS[2]["certno"])
    r = await api.post("/api/settle", json=visit("POS-SW", card_id=CARD_ID))
    assert r.status_code == 409 and r.json()["error"]["code"] == "card_changed"
    assert journal.count() == 0


async def test_account_needs_the_pin_and_a_wrong_pin_journals_nothing(api, cards, journal):
    insert_card(cards)
    r = await api.post("/api/settle", json=visit("POS-P1", acct_used_flag=True))
    assert r.status_code == 409 and r.json()["error"]["code"] == "pin_required"
    r = await api.post("/api/settle", json=visit("POS-P2", acct_used_flag=True, pin="000000"))
    assert r.json()["error"]["code"] == "wrong_pin" and r.json()["error"]["tries_left"] == 2
    assert journal.count() == 0
    r = await api.post("/api/settle", json=visit("POS-P3", acct_used_flag=True, pin="123456"))
    assert r.status_code == 200
    s = r.json()["setlinfo"]
    assert s["acct_pay"] > 0 and s["medfee_sumamt"] == s["hifp_pay"] + s["acct_pay"] + s["psn_cash_pay"]


async def test_blocked_pin_is_refused_and_journaled(api, cards, journal):
    insert_card(cards)
    for i in range(3):
        await api.post("/api/settle", json=visit(f"POS-B{i}", acct_used_flag=True, pin="000000"))
    r = await api.post("/api/settle", json=visit("POS-B9", acct_used_flag=True, pin="123456"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "pin_blocked"
    assert journal.count() == 1 and journal.get(1).kind == "refusal" and journal.get(1).body["code"] == "pin_blocked"


async def test_offline_account_allowance_caps_the_account(api, cards, journal):
    insert_card(cards)
    big = {"med_list_codg": "HEALTH-SUPP-0001", "cnt": "1", "pric": 45000}   # class C: the patient's part is all of it
    r = await api.post("/api/settle", json=visit("POS-A1", acct_used_flag=True, pin="123456", items=[big]))
    assert r.status_code == 200, r.text
    assert journal.get(1).body["acct_limit"] == 30000
    assert r.json()["setlinfo"]["acct_pay"] == 30000 and r.json()["setlinfo"]["psn_cash_pay"] == 15000


async def test_hotlisted_card_is_refused_and_the_refusal_journaled(api, cards, journal):
    insert_card(cards, card_id=HOTLISTED, certno="330302199001011235")
    r = await api.post("/api/settle", json=visit("POS-H"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "card_hotlisted"
    e = journal.get(1)
    assert e.kind == "refusal" and e.body["code"] == "card_hotlisted" and "张三" not in str(e.body)
    r = await api.post("/api/settle", json=visit("POS-H"))
    assert r.json()["error"]["code"] == "card_hotlisted" and journal.count() == 1


async def test_full_payment_claim_flow_for_arrears(api, cards, journal):
    insert_card(cards, card_id=PERSONS[1]["card_ids"][0], certno=PERSONS[1]["certno"])
    q = (await api.post("/api/presettle", json=VISIT)).json()
    assert q["mode"] == "full_payment" and q["decision"]["cause"] == "arrears"
    assert q["setlinfo"]["psn_cash_pay"] == q["setlinfo"]["medfee_sumamt"] == 7035
    r = await api.post("/api/settle", json=visit("POS-C"))
    assert r.status_code == 409 and r.json()["error"]["cause"] == "arrears"
    assert journal.count() == 0
    r = await api.post("/api/claim", json=visit("POS-C"))
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["kind"] == "claim" and rec["claim_no"] == f"{journal.device}-1" and rec["cause"] == "arrears"
    assert journal.get(1).body["paid"] == {"medfee_sumamt": 7035, "acct_pay": 0, "psn_cash_pay": 7035}
    page = await api.get("/receipt/1")
    assert rec["claim_no"] in page.text and "全额垫付" in page.text


async def test_claim_is_refused_for_a_visit_that_settles(api, cards, journal):
    insert_card(cards)
    r = await api.post("/api/claim", json=visit("POS-NC"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_full_payment"
    assert journal.count() == 0


async def test_emergency_observation_claim(api, cards, journal):
    insert_card(cards)
    r = await api.post("/api/claim", json=visit("POS-E", med_type="13", observation=True))
    assert r.status_code == 200 and r.json()["cause"] == "emergency_observation"


async def test_keyed_in_card_offline_is_card_unreadable(api, journal):
    body = visit("POS-K", keyed_in={"card_no": "A12345678", "certno": "430000197001011230"})
    q = (await api.post("/api/presettle", json=body)).json()
    assert q["decision"]["cause"] == "card_unreadable"
    r = await api.post("/api/claim", json=body)
    assert r.status_code == 200 and journal.get(1).body["card"] == {"card_id": None, "keyed_in": True}
    bad = visit("POS-K2", keyed_in={"card_no": "A12345678", "certno": "43000019700101123X"})
    r = await api.post("/api/presettle", json=bad)
    assert r.status_code == 422 and r.json()["error"]["zh"]


async def test_offline_visit_count_limit_turns_into_full_payment(api, cards, journal):
    insert_card(cards)
    for i in range(3):
        assert (await api.post("/api/settle", json=visit(f"POS-V{i}"))).status_code == 200
    q = (await api.post("/api/presettle", json=VISIT)).json()
    assert q["mode"] == "full_payment" and q["decision"]["cause"] == "offline_limit"
    assert "offline_visits" in q["decision"]["detail"]


async def test_cancel_reverses_with_a_new_entry(api, cards, journal, cache):
    insert_card(cards)
    await api.post("/api/settle", json=visit("POS-X", acct_used_flag=True, pin="123456"))
    balc = cache.person("P0001").state.balc
    assert balc < 50000
    r = await api.post("/api/settlements/1/cancel", json={"reason": "录入错误"})
    assert r.status_code == 200 and r.json()["kind"] == "cancel" and r.json()["seq"] == 2
    assert cache.person("P0001").state.balc == 50000
    again = await api.post("/api/settlements/1/cancel", json={})
    assert again.json()["seq"] == 2 and journal.count() == 2
    assert (await api.post("/api/settlements/99/cancel", json={})).status_code == 404
    assert (await api.post("/api/settlements/abc/cancel", json={})).status_code == 422


async def test_unknown_receipt(api):
    assert (await api.get("/api/receipt/5")).status_code == 404
    assert (await api.get("/api/receipt/0")).status_code == 422


async def test_openapi_and_page_are_served(api, counter):
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    # Every route served is listed, and nothing else.
    app = build_app(counter).app
    served = {(r.path, m.lower()) for r in app.routes for m in (r.methods or []) if m != "HEAD"}
    assert {(p, m) for p, ops in doc["paths"].items() for m in ops} == served
    # The request schemas are the models the API validates with, not a hand-written copy.
    from pydantic.json_schema import models_json_schema

    from edge.counter.requests import CancelBody, ItemsQuery, SimulatedCard, VisitBody

    _, generated = models_json_schema([(m, "validation") for m in (VisitBody, CancelBody, SimulatedCard, ItemsQuery)],
                                      ref_template="#/components/schemas/{model}")
    schemas = doc["components"]["schemas"]
    for name, schema in generated["$defs"].items():
        assert schemas[name] == schema, name
    for path in ("/api/presettle", "/api/settle", "/api/claim"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/VisitBody"}
    item = schemas["VisitItem"]["properties"]
    assert item["pric"]["anyOf"][0] == {"type": "integer", "minimum": 0, "description": "integer fen (1/100 yuan)"}
    assert schemas["VisitBody"]["properties"]["items"]["minItems"] == 1
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/items"]["get"]["parameters"]}
    assert params["limit"]["maximum"] == 100 and params["q"]["maxLength"] == 64
    page = await api.get("/")
    assert page.status_code == 200 and "zh-CN" in page.text


async def test_journal_that_cannot_be_written_stops_settling(api, cards, journal):
    insert_card(cards)
    journal.close()
    r = await api.post("/api/settle", json=visit("POS-J"))
    assert r.status_code == 503 and r.json()["error"]["zh"]
    s = (await api.get("/api/status")).json()
    assert s["journal"]["ok"] is False and s["journal"]["error"]["hint"]


async def test_refuses_non_loopback_peers_and_hosts(counter):
    app = build_app(counter)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.get("/api/status")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_local"
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as c:
        assert (await c.get("/api/status")).status_code == 403
    with pytest.raises(ValueError):
        await serve(app, "0.0.0.0", 0)


def _non_loopback_ip() -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent; this picks the outgoing interface
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


async def test_a_real_connection_from_another_address_is_refused(counter, nursery):
    """Serve the app (bypassing the daemon's bind check) on a non-loopback address and connect to it."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hyper_serve

    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    config = Config()
    config.bind = [f"{ip}:0"]
    config.accesslog = config.errorlog = None
    urls = await nursery.start(hyper_serve, build_app(counter), config)
    async with httpx.AsyncClient(trust_env=False) as c:
        r = await c.get(urls[0] + "/api/status")
    assert r.status_code == 403


async def test_full_journal_stops_settling_says_why_and_resumes_when_there_is_room(api, cards, journal):
    from edge.journal import JournalFull

    insert_card(cards)
    assert (await api.post("/api/settle", json=visit("POS-F1"))).status_code == 200
    journal.set_max_page_count(journal.page_count() + 4)      # a few pages of "disk" left
    with pytest.raises(JournalFull):
        for i in range(10_000):
            journal.append("note", {"what": "filler", "req": f"fill-{i}"})   # small: no room left after
    before = journal.count()
    r = await api.post("/api/settle", json=visit("POS-F2"))
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "journal_full" and "本次未结算" in err["zh"] and "disk space" in err["message"]
    s = (await api.get("/api/status")).json()
    assert s["journal"]["ok"] is False and s["journal"]["error"]["code"] == "journal_full"
    assert journal.count() == before
    journal.set_max_page_count(1_000_000)                      # room again: the retry settles, once
    r = await api.post("/api/settle", json=visit("POS-F2"))
    assert r.status_code == 200 and r.json()["seq"] == before + 1
    assert (await api.get("/api/status")).json()["journal"]["ok"] is True


def test_receipt_page_escapes_every_value_from_the_view():
    from edge.counter.receipt_page import render

    evil = "<script>alert(1)</script>"
    view = {"seq": 7, "kind": "claim", "kind_zh": "全额垫付", "mode_zh": evil, "claim_no": "D1-7", "cause_zh": evil,
            "device": "D1", "digest": "ABCDEFGHJKMN", "qr": "SSJ1:D1:7:ABCDEFGHJKMN", "time_ms": 1_764_000_000_000,
            "lines": [{"name": evil, "med_list_codg": "X1", "cnt": "2", "pric": 1280, "det_item_fee_sumamt": 2560}],
            "setlinfo": {"medfee_sumamt": 2560, "fund_pay_sumamt": 0, "acct_pay": 0, "psn_cash_pay": 2560}}
    html = render(view)
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<svg" in html and "¥25.60" in html and "¥12.80" in html and "理赔号 D1-7" in html
    assert 'id="cancel"' not in html  # only a settlement can be cancelled from its receipt
