"""Attacks from outside on the counter API's caller check (edge/counter/auth.py): HTTP against the real
server on loopback, the state directory's files, the ``edge operator`` command.

Written first against the counter as it was, three did not hold:

* a page served by another program on the clinic PC (any port of 127.0.0.1, e.g. another user's web
  server) drove the clerk's session: the cookie is SameSite=Strict, but a site is the host without
  its port, so the browser sends it; and ``Origin: http://127.0.0.1:<other port>`` passed the
  "local origin" check. A POST with no body needs no CORS preflight, so ``/api/payouts/<no>/pay``
  (a journaled cash payout) and ``/api/logout`` ran for that page;
* a token file others can read (mode 0644), or one that is a symbolic link to a file elsewhere, was
  used as it was: every program on the PC could read the HIS's credential;
* ``edge operator add`` took an id ending in a newline (``$`` in the id pattern matches before one).
"""

from __future__ import annotations

import datetime as dt
import os
import stat

import httpx
import pytest

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN
from edge.counter import build_app, serve
from edge.counter.auth import COOKIE, TOKEN_FILE, Auth, TokenFileError, ensure_token
from edge.counter.operators import OperatorError, OperatorStore

VISIT = {"med_type": "11", "acct_used_flag": False, "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


@pytest.fixture
def operators(tmp_path):
    store = OperatorStore.open(tmp_path / "operators.db")
    store.add("op1", "张收费", ["settle", "cancel", "payout", "close_shift"], "1234-secret")
    yield store
    store.close()


@pytest.fixture
async def site(counter, operators, nursery):
    auth = Auth(token="t" * 43, operators=operators)
    urls = await nursery.start(serve, build_app(counter, auth=auth), "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=urls[0], trust_env=False) as web:
        web.port = int(urls[0].rsplit(":", 1)[1].strip("/"))
        web.token = auth.token
        yield web


async def _login(web) -> None:
    r = await web.post("/api/login", json={"operator": "op1", "password": "1234-secret"})
    assert r.status_code == 200, r.text


async def test_a_page_on_another_local_port_cannot_drive_the_clerks_session(site, journal):
    await _login(site)
    other = f"http://127.0.0.1:{site.port + 1 if site.port < 65535 else site.port - 1}"
    for origin in (other, other.replace("127.0.0.1", "localhost"), "http://[::1]:1", "http://127.0.0.2",
                   "null", "file://"):
        # What a no-cors fetch from that page sends: a POST without a body, the cookie, its Origin.
        pay = await site.post("/api/payouts/P-D-1-1/pay", headers={"Origin": origin})
        assert pay.status_code == 403 and pay.json()["error"]["code"] == "not_local", (origin, pay.text)
        out = await site.post("/api/logout", headers={"Origin": origin})
        assert out.status_code == 403 and out.json()["error"]["code"] == "not_local", (origin, out.text)
    assert (await site.get("/api/me")).json()["operator"]["id"] == "op1"      # still logged in
    # The counter's own page (either loopback name, this port) and a client without Origin still work.
    for origin in (f"http://127.0.0.1:{site.port}", f"http://localhost:{site.port}", None):
        headers = {"Origin": origin} if origin else {}
        r = await site.post("/api/payouts/P-D-1-1/pay", headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_payout", (origin, r.text)
    assert journal.count() == 0


async def test_cookie_reuse_after_logout_and_forged_session_ids_are_refused(site, cards, journal):
    """Held: the server makes every session id; a logged-out id, a made-up one, or a cookie beside a
    wrong token open nothing."""
    insert_card(cards)
    await _login(site)
    sid = site.cookies.get(COOKIE)
    assert (await site.post("/api/logout")).status_code == 200
    site.cookies.set(COOKIE, sid)
    assert (await site.get("/api/card")).status_code == 401
    for forged in ("", "x", sid[:-1], sid + "A", "A" * 43):
        site.cookies.set(COOKIE, forged)
        assert (await site.get("/api/card")).status_code == 401, forged
    await _login(site)
    r = await site.get("/api/card", headers={"Authorization": "Bearer " + "y" * 43})
    assert r.status_code == 401           # a wrong token is not rescued by a good cookie
    assert journal.count() == 0


async def test_login_id_variants_neither_log_in_nor_escape_the_throttle(site):
    """Held: ids are exact (no case folding, no trimming, no Unicode look-alikes), so a variant is an
    unknown id; once op1 is locked, its right password waits whatever the variants did."""
    for op in ("OP1", "op1 ", " op1", "op1\n", "ｏｐ1", "op\u200b1", "op1\x00", ["op1"], {"id": "op1"}, None):
        r = await site.post("/api/login", json={"operator": op, "password": "1234-secret"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "login_failed", (op, r.text)
    for _ in range(5):
        await site.post("/api/login", json={"operator": "op1", "password": "guess"})
    r = await site.post("/api/login", json={"operator": "op1", "password": "1234-secret"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
    assert COOKIE not in r.headers.get("set-cookie", "")


async def test_the_query_token_opens_no_route_but_the_his_ones_whatever_the_path_spelling(site, cards):
    """Held: ``?access_token=`` is read only where the decoded path starts with /fsi/; a dot segment,
    percent-encoding or a doubled slash reaching an /api/ route is either no route or not the HIS's."""
    insert_card(cards)
    for raw in ("/fsi/../api/card", "/fsi/%2e%2e/api/card", "/fsi/%2E%2E/api/card", "//api/card", "/api//card",
                "/%66si/../api/card", "/fsi/..%2fapi/card", "/api/card/", "/API/card"):
        url = httpx.URL(str(site.base_url).rstrip("/") + raw, params={"access_token": site.token})
        for method in ("GET", "HEAD", "OPTIONS"):
            r = await site.request(method, url)
            assert r.status_code in (401, 404, 405), (raw, method, r.status_code)
            assert "张三" not in r.text and "psn_name" not in r.text, (raw, method)


def test_a_token_file_others_can_read_or_a_link_is_refused(tmp_path):
    state = tmp_path / "state"
    token = ensure_token(state)
    path = state / TOKEN_FILE
    for mode in (0o644, 0o604, 0o660, 0o666):
        os.chmod(path, mode)
        with pytest.raises(TokenFileError) as err:
            ensure_token(state)
        assert "chmod" in err.value.hint and "0640" in err.value.message, err.value.message
    os.chmod(path, 0o640)
    assert ensure_token(state) == token
    os.chmod(path, 0o600)
    assert ensure_token(state) == token        # stricter than 0640 is fine
    # A link put where the token file goes (to a file another user wrote, or to a place it will write).
    elsewhere = tmp_path / "elsewhere.token"
    elsewhere.write_text("k" * 43 + "\n")
    os.chmod(elsewhere, 0o600)
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(TokenFileError):
        ensure_token(state)
    path.unlink()
    path.symlink_to(tmp_path / "not-yet")      # dangling: written through, the token would land elsewhere
    with pytest.raises(TokenFileError):
        ensure_token(state)
    assert not (tmp_path / "not-yet").exists()
    assert stat.S_ISLNK(path.lstat().st_mode)


def test_an_operator_id_with_a_line_break_or_control_characters_is_refused(operators, tmp_path, monkeypatch, capsys):
    for bad in ("op9\n", "op9\r\n", "\nop9", "op\t9", "op 9"):
        with pytest.raises(OperatorError):
            operators.add(bad, "王", ["settle"], "pw-123456")
    assert [o.id for o in operators.list()] == ["op1"]
    from edge.cli import main
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("pw-123456\n"))
    code = main(["operator", "add", "op9\n", "--name", "王", "--roles", "settle", "--password-stdin",
                 "--state-dir", str(tmp_path)])
    assert code == 2 and "工号" in capsys.readouterr().err
    assert [o.id for o in operators.list()] == ["op1"]


def test_names_with_control_characters_or_too_long_are_refused_html_is_kept_as_text(operators):
    """Held for control characters and length; a name with markup is stored as text (the receipt and
    shift pages escape it: tested below through the API)."""
    for bad in ("王\n五", "王\x1b[31m", "王\u202e五", "王" * 41, "x" * 10_000, " ", ""):
        with pytest.raises(OperatorError):
            operators.add("op7", bad, ["settle"], "pw-123456")
    op = operators.add("op8", "<script>alert(1)</script>", ["settle", "close_shift"], "pw-123456")
    assert op.name == "<script>alert(1)</script>"


async def test_markup_in_an_operators_name_is_text_on_the_receipt_and_the_shift_page(site, operators, cards, counter,
                                                                                    journal):
    """Held: receipt and shift pages are autoescaped templates."""
    operators.add("op8", "<img src=x onerror=alert(1)>", ["settle", "close_shift"], "pw-123456")
    r = await site.post("/api/login", json={"operator": "op8", "password": "pw-123456"})
    assert r.status_code == 200, r.text
    insert_card(cards)
    done = await site.post("/api/settle", json={"req": "XSS-1", **VISIT})
    assert done.status_code == 200, done.text
    day = dt.datetime.fromtimestamp(journal.get(done.json()["seq"]).time / 1000, counter.clock.tz).date()
    for page in (f"/receipt/{done.json()['seq']}", f"/visits?date={day}", f"/shift?date={day}"):
        html = (await site.get(page)).text
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html, page


def test_a_locked_id_is_not_forgotten_by_failing_a_thousand_other_ids():
    """Written first: the per-id bookkeeping keeps 1000 ids and dropped the oldest; failing 1000 made-up
    ids (50 a minute pass the overall limit: 20 minutes) pushed op1's lock and failure count out, and op1
    had 5 free guesses again. Driven on the throttle itself (1000 scrypt checks over HTTP would only be
    slower, not different)."""
    from edge.counter.auth import FREE_TRIES, Throttle

    t = [0.0]
    throttle = Throttle(lambda: t[0])
    for _ in range(FREE_TRIES + 1):
        t[0] += throttle.wait_s("op1") + 1
        throttle.failed("op1")
    assert throttle.wait_s("op1") > 0
    for i in range(1000):
        t[0] += 1.3            # under the overall limit (50 a minute)
        assert throttle.wait_s(f"made-up-{i}") == 0
        throttle.failed(f"made-up-{i}")
    # One more wrong guess for op1 (after whatever wait is left): still locked, not a fresh count.
    t[0] += throttle.wait_s("op1") + 1
    throttle.failed("op1")
    assert throttle.wait_s("op1") > 0, "op1's failures were forgotten: it has free guesses again"


def test_no_clerk_can_take_the_his_operators_id(operators):
    """Written first: ``edge operator add HIS`` was accepted, so a clerk's settlements and cancels were
    written as the installation token's operator (id HIS) and the shift close could not tell them apart."""
    for reserved in ("HIS", "his", "His"):
        with pytest.raises(OperatorError):
            operators.add(reserved, "医院信息系统", ["settle", "cancel"], "pw-123456")
    assert [o.id for o in operators.list()] == ["op1"]


async def test_a_misspelt_or_misplaced_token_never_reaches_the_access_log(site, caplog):
    """Written first: only a query key spelt exactly ``access_token`` was written as [secret]; a HIS
    configured with ``Access_Token=``, ``token=`` or the token in the path got 401 and the token itself
    in the counter's access log."""
    import logging

    caplog.set_level(logging.DEBUG)
    his = "/fsi/api/rsfComIfsService/callService"
    for url, params in ((his, {"Access_Token": site.token}), (his, {"token": site.token}),
                        (his + "/" + site.token, {}), ("/api/status", {"access_token": site.token}),
                        (his, {"q": f"x{site.token}y"})):
        r = await site.post(url, params=params, json={"infno": "9001", "input": {}})
        assert r.status_code == 401, (url, params, r.status_code)
    # One more request on the same connection: the last one's access line is written once it is answered.
    assert (await site.get("/openapi.json")).status_code == 200
    access = [rec for rec in caplog.records if rec.name == "edge.counter.access"]
    assert len(access) >= 5
    for rec in caplog.records:
        if rec.name.startswith(("httpx", "httpcore")):
            continue            # the test's own client logs its URL; the counter's logs must not
        assert site.token not in rec.getMessage(), rec.getMessage()


async def test_a_disabled_clerk_can_change_nothing_after_edge_operator_disable(site, operators, cards, journal, tmp_path):
    """Written first: a session looked at the operator store again only every 30 s, so in that window a
    clerk just disabled (``edge operator disable``, run by the command on the same file) could still
    settle, cancel and pay out. Reads may lag by the recheck; anything that changes money may not."""
    from edge.cli import main

    operators.add("op2", "李收费", ["settle", "cancel", "payout"], "5678-secret")
    insert_card(cards)
    r = await site.post("/api/login", json={"operator": "op2", "password": "5678-secret"})
    assert r.status_code == 200, r.text
    assert (await site.post("/api/settle", json={"req": "DIS-1", **VISIT})).status_code == 200
    assert main(["operator", "disable", "op2", "--state-dir", str(tmp_path)]) == 0
    before = journal.count()
    for path, body in (("/api/settle", {"req": "DIS-2", **VISIT}), ("/api/claim", {"req": "DIS-3", **VISIT}),
                       ("/api/settlements/1/cancel", {"reason": "x"}), ("/api/payouts/P-D-1-1/pay", {})):
        r = await site.post(path, json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", (path, r.text)
    assert journal.count() == before


async def test_a_password_typed_into_the_id_field_is_not_logged(site, caplog):
    """Written first: a failed login logged the id as typed; a clerk who typed the password into the id
    field (a common slip) had it written to the log. Only an existing operator's id is logged now."""
    import logging

    caplog.set_level(logging.DEBUG)
    r = await site.post("/api/login", json={"operator": "1234-secret", "password": "1234-secret"})
    assert r.status_code == 401
    r = await site.post("/api/login", json={"operator": "op1", "password": "wrong-one"})
    assert r.status_code == 401
    texts = [rec.getMessage() + " " + str(getattr(rec, "operator", "")) for rec in caplog.records
             if rec.name.startswith("edge.")]
    assert not any("1234-secret" in t for t in texts), texts
    assert any(getattr(rec, "operator", None) == "op1" and getattr(rec, "event", "") == "login_failed"
               for rec in caplog.records)


def test_the_operators_password_hashes_are_readable_by_the_counters_user_only(tmp_path, monkeypatch, capsys):
    """Written first: ``edge operator add`` (run by an administrator's shell, umask 022) or a daemon started
    outside the packaged unit created ``operators.db`` 0644. Beside a state directory the HIS's group may
    traverse (docs/his.md: 0710), or a 0755 one, another user read the scrypt hashes and tried the 10,000
    four-digit PINs offline, where no login throttle applies."""
    from edge.cli import main

    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO("1234\n"))
        assert main(["operator", "add", "op5", "--name", "王", "--roles", "settle", "--password-stdin",
                     "--state-dir", str(state)]) == 0
        db = state / "operators.db"
        assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0, oct(db.stat().st_mode)
        os.chmod(db, 0o644)            # a file made loose before this release is tightened when opened
        OperatorStore.in_state_dir(state).close()
        assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0, oct(db.stat().st_mode)
    finally:
        os.umask(old)
    capsys.readouterr()


async def test_no_page_of_the_counter_can_be_framed_by_another_local_page(site, cards):
    """Written first: no answer said it may not be framed. A page on another port of 127.0.0.1 is the same
    site, so a frame of the counter page there carries the clerk's session, and its own buttons (结算,
    撤销, 支付) post with the counter's Origin: a page laid over it could have the clerk click them."""
    await _login(site)
    insert_card(cards)
    done = await site.post("/api/settle", json={"req": "FRAME-1", **VISIT})
    assert done.status_code == 200, done.text
    for path in ("/", f"/receipt/{done.json()['seq']}", "/shift", "/visits", "/api/status", "/openapi.json",
                 "/receipt/999"):
        r = await site.get(path)
        assert r.headers.get("x-frame-options") == "DENY", (path, dict(r.headers))
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), path
    site.cookies.clear()
    r = await site.get("/shift")
    assert r.status_code == 401 and r.headers.get("x-frame-options") == "DENY"
