"""Operators (clerks) at the counter: who they are, what they may do, and that every entry and receipt names
them. The store is real SQLite in the test's directory; the API is the real server on loopback.

Written first against the counter as it was: there were no operators, no login, settle took no operator,
settlement and claim entries named nobody and the receipt printed 操作员（未记录）.
"""

from __future__ import annotations

import io

import httpx
import pytest

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN
from edge.counter import build_app, serve
from edge.counter.auth import COOKIE, Auth
from edge.counter.operators import OperatorError, OperatorStore
from sync import bodies
from sync.errors import BodyError

VISIT = {"med_type": "11", "acct_used_flag": False, "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


class Ticking:
    """A monotonic clock the test moves by hand (lockouts are measured on it)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def operators(tmp_path):
    store = OperatorStore.open(tmp_path / "operators.db")
    store.add("op1", "张收费", ["settle", "cancel", "payout", "close_shift"], "1234-secret")
    store.add("op2", "李收费", ["settle"], "5678-secret")
    yield store
    store.close()


@pytest.fixture
def clock():
    return Ticking()


@pytest.fixture
async def site(counter, operators, clock, nursery):
    auth = Auth(token="t" * 43, operators=operators, clock=clock)
    app = build_app(counter, auth=auth)
    urls = await nursery.start(serve, app, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=urls[0], trust_env=False) as web:
        web.auth_headers = auth.headers
        yield web


async def _login(web, op="op1", secret="1234-secret"):
    return await web.post("/api/login", json={"operator": op, "password": secret})


def test_the_store_keeps_scrypt_hashes_roles_and_disables(operators, tmp_path):
    raw = (tmp_path / "operators.db").read_bytes()
    assert b"1234-secret" not in raw and b"scrypt$" in raw
    listed = {o.id: o for o in operators.list()}
    assert listed["op2"].roles == frozenset({"settle"}) and listed["op2"].name == "李收费"
    assert operators.verify("op1", "1234-secret").id == "op1"
    assert operators.verify("op1", "wrong") is None and operators.verify("nobody", "1234-secret") is None
    operators.disable("op2")
    assert operators.verify("op2", "5678-secret") is None and not operators.get("op2").enabled
    with pytest.raises(OperatorError):
        operators.add("op3", "王", ["settle", "everything"], "pw-123456")
    with pytest.raises(OperatorError):
        operators.add("op1", "again", ["settle"], "pw-123456")        # an id is never reused silently
    with pytest.raises(OperatorError):
        operators.add("op4", "短", ["settle"], "123")                  # a PIN of at least 4 characters


def test_cli_adds_lists_and_disables(tmp_path, monkeypatch, capsys):
    from edge import cli

    state = tmp_path / "state"
    monkeypatch.setattr("sys.stdin", io.StringIO("9876\n"))
    assert cli.main(["operator", "add", "op9", "--name", "赵收费", "--roles", "settle,cancel", "--state-dir",
                     str(state), "--password-stdin"]) == 0
    assert cli.main(["operator", "list", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "op9" in out and "赵收费" in out and "cancel" in out and "9876" not in out
    assert cli.main(["operator", "disable", "op9", "--state-dir", str(state)]) == 0
    store = OperatorStore.open(state / "operators.db")
    try:
        assert store.get("op9").enabled is False and store.verify("op9", "9876") is None
    finally:
        store.close()
    assert cli.main(["operator", "disable", "nobody", "--state-dir", str(state)]) == 2


async def test_login_sets_a_strict_session_cookie_and_logout_ends_it(site):
    assert (await site.get("/api/me")).status_code == 401
    r = await _login(site)
    assert r.status_code == 200, r.text
    assert r.json()["operator"] == {"id": "op1", "name": "张收费", "roles": ["cancel", "close_shift", "payout", "settle"]}
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attrs
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert (await site.get("/api/me")).json()["operator"]["id"] == "op1"
    assert (await site.post("/api/logout")).status_code == 200
    assert (await site.get("/api/me")).status_code == 401
    assert (await site.get("/api/status")).status_code == 401


async def test_wrong_passwords_are_throttled_even_for_the_right_one(site, clock):
    for _ in range(5):
        r = await _login(site, secret="guess")
        assert r.status_code == 401 and r.json()["error"]["code"] == "login_failed"
        assert "工号或密码" in r.json()["error"]["zh"]
    r = await _login(site)
    assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
    assert r.json()["error"]["retry_after_s"] > 0 and "秒" in r.json()["error"]["zh"]
    assert COOKIE not in r.headers.get("set-cookie", "")
    clock.t += r.json()["error"]["retry_after_s"] + 1
    assert (await _login(site)).status_code == 200


async def test_unknown_and_disabled_operators_get_the_same_answer(site, operators):
    unknown = await _login(site, op="ghost", secret="1234-secret")
    operators.disable("op2")
    disabled = await _login(site, op="op2", secret="5678-secret")
    assert unknown.status_code == disabled.status_code == 401
    assert unknown.json() == disabled.json()


async def test_a_disabled_clerks_session_stops_working(site, operators, clock):
    assert (await _login(site, op="op2", secret="5678-secret")).status_code == 200
    assert (await site.get("/api/status")).status_code == 200
    operators.disable("op2")
    clock.t += 60         # sessions look at the store again at least once a minute
    assert (await site.get("/api/status")).status_code == 401


async def test_a_clerk_without_the_cancel_role_cannot_cancel(site, cards, journal):
    insert_card(cards)
    assert (await _login(site, op="op2", secret="5678-secret")).status_code == 200
    r = await site.post("/api/settle", json={"req": "OP-1", **VISIT})
    assert r.status_code == 200, r.text
    r = await site.post(f"/api/settlements/{r.json()['seq']}/cancel", json={"reason": "录错"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_allowed"
    assert "权限" in r.json()["error"]["zh"]
    assert journal.count() == 1
    r = await site.get("/api/shift")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_allowed"


async def test_a_clerk_without_the_settle_role_cannot_settle(site, cards, journal, operators):
    operators.add("op5", "只撤销", ["cancel"], "pw-5555")
    insert_card(cards)
    assert (await _login(site, op="op5", secret="pw-5555")).status_code == 200
    for path in ("/api/settle", "/api/claim", "/api/presettle"):
        r = await site.post(path, json={"req": "OP-5", **VISIT})
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_allowed", path
        assert "权限" in r.json()["error"]["zh"]
    assert journal.count() == 0


async def test_entries_and_receipts_name_the_operator(site, cards, journal):
    insert_card(cards)
    assert (await _login(site)).status_code == 200
    r = await site.post("/api/settle", json={"req": "OP-R", **VISIT})
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    body = journal.get(seq).body
    assert body["operator"] == {"id": "op1", "name": "张收费"}
    # The contract binds the field: parsed, and refused when it is not an id and a short name.
    assert bodies.Settlement.parse(body).operator == {"id": "op1", "name": "张收费"}
    for bad in ({"id": 7, "name": "x"}, {"id": "op1", "name": "x" * 5000}, {"id": "op1"}, "op1"):
        with pytest.raises(BodyError):
            bodies.Settlement.parse({**body, "operator": bad})
    assert r.json()["operator"] == {"id": "op1", "name": "张收费"}
    page = await site.get(f"/receipt/{seq}")
    assert page.status_code == 200 and "张收费" in page.text and "op1" in page.text and "未记录" not in page.text
    c = await site.post(f"/api/settlements/{seq}/cancel", json={"reason": "录错"})
    assert c.status_code == 200, c.text
    assert journal.get(c.json()["seq"]).body["operator"] == {"id": "op1", "name": "张收费"}
    shift = (await site.get("/api/shift", params={"date": _today()})).json()
    assert "operators" in shift, shift
    assert [t["operator"] for t in shift["operators"]] == ["张收费"]


async def test_the_installation_token_acts_as_the_his_operator(site, cards, journal):
    insert_card(cards)
    r = await site.post("/api/settle", json={"req": "OP-H", **VISIT}, headers=site.auth_headers)
    assert r.status_code == 200, r.text
    assert journal.get(r.json()["seq"]).body["operator"] == {"id": "HIS", "name": "医院信息系统"}
    # The shift close is signed by a named clerk: the HIS's token does not close a shift.
    assert (await site.get("/api/shift", headers=site.auth_headers)).status_code == 403


async def test_a_claim_names_its_operator(site, cards, journal):
    from counter.helpers import PERSONS

    insert_card(cards, card_id=PERSONS[1]["card_ids"][0], certno=PERSONS[1]["certno"])   # arrears: full payment
    assert (await _login(site, op="op2", secret="5678-secret")).status_code == 200
    r = await site.post("/api/claim", json={"req": "OP-C", **VISIT})
    assert r.status_code == 200, r.text
    body = journal.get(r.json()["seq"]).body
    assert bodies.Claim.parse(body).operator == {"id": "op2", "name": "李收费"}
    page = await site.get(f"/receipt/{r.json()['seq']}")
    assert "李收费" in page.text and "op2" in page.text


def _today() -> str:
    """The day the entries were journaled on (the fixture's clock fixes the visit date, not the wall clock)."""
    import datetime as dt

    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()


async def test_a_clerks_session_is_for_the_page_not_for_foreign_sites_or_the_his_routes(site, cards, journal):
    insert_card(cards)
    assert (await _login(site)).status_code == 200
    r = await site.post("/api/settle", json={"req": "OP-X", **VISIT}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_local"
    r = await site.post("/fsi/api/rsfComIfsService/callService", json={"infno": "9001", "input": {}})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert journal.count() == 0
    ok = await site.post("/api/settle", json={"req": "OP-X", **VISIT}, headers={"Origin": str(site.base_url).rstrip("/")})
    assert ok.status_code == 200, ok.text
