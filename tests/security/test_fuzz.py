"""Fuzz: no input to the centre's or the counter's endpoints yields a 500; every refusal carries a code.

Issue 14, "bounded resources": hypothesis generates raw bytes, broken sync frames (bad magic,
version, codec, truncated zstd, garbage CBOR), valid-looking frames whose fields have the wrong
types, entries signed by an enrolled device with absurd values, JSON bodies with wrong types, huge
numbers, deep nesting and lone surrogates, and bad signing headers. Each goes to the real centre
(``/v1/enrol``, ``/v1/upload``, ``/v1/feed``, the review desk's logins) and the real counter API
(``/api/settle``, ``/api/presettle``, ``/api/claim``, ``/api/items``, ``/api/settlements/{n}/cancel``)
on loopback. The answer is never >= 500, and a 4xx names a code: ``code`` in an error frame,
``error.code`` or ``code`` in JSON, or a non-empty page for HTML.

Both servers run once per module in their own thread (one ``trio.run``), so the examples cost one
HTTP round trip each; the budget is fixed (``max_examples`` below) and deterministic (``derandomize``).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from typing import Any

import cbor2
import httpx
import pytest
import trio
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from sync import auth, wire

SITE = "S330300001"
DEVICE = "D-S330300001-1"
WIRE = {"content-type": wire.CONTENT_TYPE}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------ servers ---
class Servers:
    centre: str
    counter: str
    key: SigningKey
    token: str
    counter_auth: dict     # the counter's installation token header: the fuzz reaches the handlers


def _serve(tmp, ready: queue.Queue) -> None:
    """The centre (SQLite) and the counter API (real journal, cache with the signed sample) in one trio run."""
    from counter.conftest import FixedDayClock
    from counter.helpers import Centre
    from edge.cache import Cache
    from edge.counter import Counter, Settings, SimulatedCards, build_app, serve
    from edge.journal import JournalStore
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    async def main():
        store = open_store(tmp / "centre.db")
        sample = Centre()
        cache = Cache.open(tmp / "cache.db")
        for raw in sample.sample():
            cache.apply_bundle(raw, sample.verify_key, now_ms=1)
        journal = JournalStore.open(tmp / "journal.db", signing_key=SigningKey.generate(), device=DEVICE)
        counter = Counter(cache=cache, journal=journal, cards=SimulatedCards(pin="123456"), clock=FixedDayClock(),
                          settings=Settings(level="village"))
        counter.mark_refreshed()
        try:
            async with trio.open_nursery() as nursery:
                # No rate limits here, so every example reaches the handlers (past the limit every enrolment
                # and login would be answered by the limiter alone); the limits have tests of their own
                # (test_rate_limits.py), and the concurrency bound and body cap stay on.
                centre = await start_centre(nursery, store, rates={})
                app = build_app(counter)
                urls = await nursery.start(serve, app, "127.0.0.1", 0)
                s = Servers()
                s.counter_auth = app.auth.headers
                s.centre, s.counter, s.key = centre.url, urls[0], SigningKey.generate()
                store.register_device(DEVICE, SITE, bytes(s.key.verify_key))
                s.token = store.create_enrol_token(SITE)
                stop = trio.Event()
                ready.put((s, trio.lowlevel.current_trio_token(), stop))
                await stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            journal.close()
            cache.close()
            store.close()

    try:
        trio.run(main)
    except BaseException as exc:  # noqa: BLE001  (handed to the test thread, which raises it)
        ready.put(exc)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ready: queue.Queue = queue.Queue()
    thread = threading.Thread(target=_serve, args=(tmp_path_factory.mktemp("fuzz"), ready), daemon=True)
    thread.start()
    got = ready.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    s, token, stop = got
    yield s
    trio.from_thread.run_sync(stop.set, trio_token=token)
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def http():
    with httpx.Client(trust_env=False, timeout=30) as client:
        yield client


# ---------------------------------------------------------------------------------- assertion ---
def assert_coded(r: httpx.Response) -> None:
    """Never a 500; a 4xx carries a machine-readable code."""
    assert r.status_code < 500, (r.status_code, r.content[:500])
    if r.status_code < 400:
        return
    ctype = r.headers.get("content-type", "")
    if wire.CONTENT_TYPE in ctype:
        msg = wire.decode(r.content)
        assert msg.get("t") == "error" and isinstance(msg.get("code"), str) and msg["code"], msg
    elif "json" in ctype:
        data = r.json()
        err = data.get("error") if isinstance(data.get("error"), dict) else data
        assert isinstance(err.get("code"), str) and err["code"], data
    elif "html" in ctype:
        assert r.text.strip(), r
    else:
        raise AssertionError(f"4xx without a coded body: {r.status_code} {ctype} {r.content[:200]!r}")


# --------------------------------------------------------------------------------- strategies ---
huge_ints = st.sampled_from([2**31, 2**53 + 1, 2**63, 2**64, 2**64 + 1, 10**19, 10**40, -(2**63) - 1, -(10**30)])
ints = st.integers(min_value=-(2**70), max_value=2**70) | huge_ints
lone_surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udc80" * 3, "POS-\ud83d"])
texts = st.text(max_size=24) | lone_surrogates | st.sampled_from(["", "0", "1", "-1", "1e309", "NaN", "x" * 5000])


def cbor_values():
    leaves = (st.none() | st.booleans() | ints | st.floats() | st.binary(max_size=64) | st.text(max_size=16))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=12)


def json_values():
    leaves = (st.none() | st.booleans() | ints | st.floats(allow_nan=False) | texts)
    return st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(texts, c, max_size=4),
                        max_leaves=12)


def _frame(body: bytes, *, codec: int = wire.RAW, version: int = wire.VERSION) -> bytes:
    return wire.MAGIC + bytes((version, codec)) + body


def _bad_utf8_text() -> bytes:
    """CBOR text (major type 3) holding a lone surrogate's UTF-8 bytes: no encoder writes it."""
    return b"\x63\xed\xa0\x80"


@st.composite
def broken_frames(draw) -> bytes:
    kind = draw(st.sampled_from(["raw", "magic", "version", "codec", "zstd_garbage", "zstd_truncated",
                                 "cbor_garbage", "cbor_truncated", "declared_huge", "bad_utf8"]))
    junk = draw(st.binary(max_size=256))
    good = cbor2.dumps(draw(cbor_values()))
    if kind == "raw":
        return junk
    if kind == "magic":
        return b"SSX" + junk
    if kind == "version":
        return _frame(junk, version=draw(st.integers(0, 255).filter(lambda v: v != wire.VERSION)))
    if kind == "codec":
        return _frame(junk, codec=draw(st.integers(2, 255)))
    if kind == "zstd_garbage":
        return _frame(b"\x28\xb5\x2f\xfd" + junk, codec=wire.ZSTD)
    if kind == "zstd_truncated":
        z = zstandard.ZstdCompressor().compress(good * 8)
        return _frame(z[:draw(st.integers(0, max(0, len(z) - 1)))], codec=wire.ZSTD)
    if kind == "cbor_garbage":
        return _frame(junk)
    if kind == "cbor_truncated":
        return _frame(good[:draw(st.integers(0, max(0, len(good) - 1)))])
    if kind == "declared_huge":
        size = draw(st.sampled_from([wire.MAX_FRAME + 1, 2**32, 2**40, 2**56]))
        return _frame(zstandard.ZstdCompressor().compressobj(size=size).flush(), codec=wire.ZSTD)
    # a map whose values are invalid UTF-8 text, under a plausible type
    return _frame(b"\xa2\x61t" + draw(st.sampled_from([b"\x65enrol", b"\x66upload", b"\x64feed"])) + b"\x61x"
                  + _bad_utf8_text())


def _encode(msg: Any, compress: bool) -> bytes:
    return wire.encode(msg, compress=compress)


@st.composite
def typed_messages(draw, t: str) -> bytes:
    """A valid-looking message of type ``t`` whose fields have wrong types or absurd values."""
    any_v = cbor_values()
    fields = {"enrol": ["token", "pubkey", "sig"], "upload": ["device", "entries"], "feed": ["cursor", "limit"]}[t]
    msg: dict[Any, Any] = {"t": draw(st.sampled_from([t, t, "error", "enrolled", 1, None]))}
    for f in fields:
        if draw(st.booleans()):
            msg[f] = draw(any_v)
    if t == "upload" and draw(st.booleans()):
        msg["device"] = DEVICE
        msg["entries"] = draw(st.lists(st.lists(any_v | ints, max_size=3) | any_v, max_size=5))
    if t == "feed" and draw(st.booleans()):
        msg["cursor"], msg["limit"] = draw(ints), draw(ints)
    msg.update(draw(st.dictionaries(st.text(max_size=6), any_v, max_size=2)))
    return _encode(msg, draw(st.booleans()))


@st.composite
def signed_entries(draw) -> tuple:
    """An upload of entries signed with the enrolled device's key, whose fields are absurd."""
    from edge.journal.entry import GENESIS, make_entry
    from harness.simulate import pharmacy_sale

    seq = draw(st.integers(1, 3) | huge_ints.filter(lambda v: v > 0))
    body = pharmacy_sale(seq if seq < 2**31 else 1, device=DEVICE)
    where = draw(st.sampled_from(["time", "mono", "kind", "body_field", "paid", "items", "none"]))
    time_v, mono, kind = 1_764_000_000_000, 0, "settlement"
    if where == "time":
        time_v = draw(ints)
    elif where == "mono":
        mono = draw(ints)
    elif where == "kind":
        kind = draw(texts)
    elif where == "body_field":
        body[draw(st.sampled_from(sorted(body)))] = draw(cbor_values())
    elif where == "paid":
        body["paid"] = {k: draw(ints) for k in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")}
    elif where == "items":
        body["items"] = draw(st.lists(st.dictionaries(st.sampled_from(["code", "cnt", "pric", "name"]),
                                                      cbor_values() | ints, max_size=4), max_size=3))
    return seq, time_v, mono, kind, body, GENESIS, make_entry


def json_bodies() -> st.SearchStrategy[bytes]:
    """JSON bodies: garbage bytes, non-objects, objects with wrong types, deep nesting, lone surrogates."""
    visit_fields = {
        "req": texts | ints, "reader": texts | st.none() | ints, "card_id": texts | st.none() | json_values(),
        "keyed_in": json_values(), "med_type": texts | ints, "acct_used_flag": json_values(),
        "chronic_code": texts | st.none(), "observation": json_values(), "pin": texts | ints,
        "items": st.lists(st.dictionaries(st.sampled_from(["med_list_codg", "code", "cnt", "pric"]),
                                          json_values() | ints | texts, max_size=4), max_size=4) | json_values(),
        "reason": texts | json_values(), "name": texts | json_values(), "password": texts | json_values(),
    }
    objects = st.fixed_dictionaries({}, optional=visit_fields).map(
        lambda d: json.dumps(d, ensure_ascii=True).encode())
    nested = st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n)
    deep_obj = st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    raw_surrogate = st.just(b'{"req": "\xed\xa0\x80", "items": []}')
    escaped_surrogate = st.just(b'{"req": "\\ud800", "name": "\\udc00", "password": "\\ud83d"}')
    big_numbers = st.sampled_from([b'{"req": "R1", "items": [{"med_list_codg": "X", "cnt": 1e400, "pric": 1}]}',
                                   b'{"req": "R1", "items": [{"med_list_codg": "X", "cnt": "1", "pric": '
                                   + b"9" * 5000 + b"}]}",
                                   b'{"req": "R1", "items": [{"med_list_codg": "X", "cnt": -1e-400, "pric": 1}]}',
                                   b'{"req": NaN, "items": Infinity}'])
    others = json_values().map(lambda v: json.dumps(v).encode())
    return (objects | others | nested | deep_obj | raw_surrogate | escaped_surrogate | big_numbers
            | st.binary(max_size=200))


header_values = (st.text(max_size=40) | st.sampled_from(["", "0", "-1", "9" * 30, "1e3", " 1", "1.5"])
                 | st.binary(max_size=20).map(lambda b: b.decode("latin-1")))


@st.composite
def bad_headers(draw) -> dict[str, bytes]:
    """Signing headers with one or more of them missing, malformed, or lying."""
    base = {auth.H_DEVICE: DEVICE, auth.H_TIME: str(int(time.time() * 1000)), auth.H_NONCE: secrets.token_hex(16),
            auth.H_SIG: "A" * 86 + "=="}
    for h in draw(st.lists(st.sampled_from(list(base)), min_size=1, max_size=4, unique=True)):
        choice = draw(st.sampled_from(["drop", "fuzz"]))
        if choice == "drop":
            del base[h]
        else:
            base[h] = draw(header_values)
    # sent as latin-1 bytes (non-ASCII octets included); HTTP itself cannot carry CR, LF or NUL in a value
    return {k: v.encode("latin-1") for k, v in base.items()
            if all(ord(c) < 256 for c in v) and v.isprintable() and v == v.strip()}


# -------------------------------------------------------------------------------------- tests ---
def _post_signed(http, servers, path: str, body: bytes) -> httpx.Response:
    h = auth.sign_request(servers.key, DEVICE, "POST", path, body, time_ms=int(time.time() * 1000))
    return http.post(servers.centre + path, content=body, headers={**WIRE, **h})


@FUZZ
@given(body=broken_frames() | typed_messages("enrol") | st.binary(max_size=300))
@example(body=_frame(zstandard.ZstdCompressor().compressobj(size=2**40).flush(), codec=wire.ZSTD))
def test_enrol_never_500(servers, http, body):
    assert_coded(http.post(servers.centre + "/v1/enrol", content=body, headers=WIRE))


@FUZZ
@given(token=texts, pubkey=st.binary(max_size=40), sig=st.binary(max_size=70))
def test_enrol_with_a_real_token_and_bad_keys_never_500(servers, http, token, pubkey, sig):
    for t in (token, servers.token):
        msg = {"t": "enrol", "token": t, "pubkey": pubkey, "sig": sig}
        try:
            body = wire.encode(msg)
        except (UnicodeEncodeError, ValueError):
            continue
        assert_coded(http.post(servers.centre + "/v1/enrol", content=body, headers=WIRE))


@FUZZ
@given(body=broken_frames() | typed_messages("upload") | typed_messages("feed"), path=st.sampled_from(["/v1/upload",
                                                                                                        "/v1/feed"]))
def test_signed_upload_and_feed_never_500(servers, http, body, path):
    assert_coded(_post_signed(http, servers, path, body))


@FUZZ
@given(spec=signed_entries(), compress=st.booleans())
def test_upload_of_signed_absurd_entries_never_500(servers, http, spec, compress):
    seq, time_v, mono, kind, body, genesis, make_entry = spec
    try:
        e = make_entry(servers.key, seq=seq, prev=genesis, device=DEVICE, time=time_v, mono=mono, kind=kind, body=body)
    except Exception:  # noqa: BLE001  the journal's encoder refuses it: sign raw CBOR of the same map instead
        e = None
    raw = e.raw if e is not None else cbor2.dumps({"seq": seq, "time": time_v, "kind": kind})
    msg = {"t": "upload", "device": DEVICE, "entries": [[seq, raw]]}
    assert_coded(_post_signed(http, servers, "/v1/upload", wire.encode(msg, compress=compress)))


@FUZZ
@given(headers=bad_headers(), path=st.sampled_from(["/v1/upload", "/v1/feed"]))
def test_bad_signing_headers_never_500(servers, http, headers, path):
    body = wire.encode({"t": "feed", "cursor": 0, "limit": 10} if path == "/v1/feed"
                       else {"t": "upload", "device": DEVICE, "entries": []})
    assert_coded(http.post(servers.centre + path, content=body, headers={**WIRE, **headers}))


@FUZZ
@given(body=json_bodies(), ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                                  ""]))
@example(body=b'{"name": "\\udc00", "password": "x"}', ctype="application/json")   # was a 500 (store encoder)
@example(body=b"[" * 2033 + b"]" * 2033, ctype="application/json")   # was a 500 (RecursionError in the JSON parser)
def test_review_logins_never_500(servers, http, body, ctype):
    headers = {"content-type": ctype} if ctype else {}
    assert_coded(http.post(servers.centre + "/v1/review/login", content=body, headers=headers))
    assert_coded(http.post(servers.centre + "/review/login", content=body, headers=headers))


@FUZZ
@given(body=json_bodies(), path=st.sampled_from(["/api/settle", "/api/presettle", "/api/claim",
                                                 "/api/settlements/1/cancel"]))
@example(body=b'{"req": "\\ud800", "med_type": "11", "items": []}', path="/api/settle")
def test_counter_posts_never_500(servers, http, body, path):
    assert_coded(http.post(servers.counter + path, content=body, headers={"content-type": "application/json",
                                                                         **servers.counter_auth}))


@FUZZ
@given(seq=st.sampled_from(["0", "-1", "1", "99999999999999999999", "abc", "1.5", "%F0%9F", "%ED%A0%80", "1e9"]),
       body=json_bodies())
def test_counter_cancel_of_any_seq_never_500(servers, http, seq, body):
    assert_coded(http.post(servers.counter + f"/api/settlements/{seq}/cancel", content=body,
                           headers={"content-type": "application/json", **servers.counter_auth}))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["q", "limit", "offset", "x"]), texts | st.binary(max_size=10).map(
    lambda b: b.decode("latin-1")), max_size=3))
def test_counter_items_never_500(servers, http, params):
    try:
        r = http.get(servers.counter + "/api/items", params=params, headers=servers.counter_auth)
    except UnicodeEncodeError:  # a lone surrogate cannot even be put in a URL by the client
        return
    assert_coded(r)


@FUZZ
@given(body=json_bodies(), path=st.sampled_from(["/api/settle", "/api/card", "/api/status", "/api/settlements/1/cancel",
                                                 "/api/payouts/P-x-1/pay", "/api/receipt/1", "/api/shift", "/receipt/1",
                                                 "/fsi/api/rsfComIfsService/callService", "/api/logout", "/api/me",
                                                 "/api/login"]),
       method=st.sampled_from(["GET", "POST", "DELETE"]),
       credential=st.sampled_from(["", "Bearer", "Bearer x", "bearer \u00e9\u00e9", "Basic abc", "Bearer " + "A" * 5000,
                                   "Bearer \t", "cookie", "query"]),
       presented=texts)
@example(body=b"{}", path="/api/card", method="GET", credential="Bearer x", presented="")
def test_counter_without_a_good_credential_is_401_never_500(servers, http, body, path, method, credential, presented):
    """Issue 14, finding 5: whatever an unauthenticated caller sends (bad schemes, long, non-ASCII tokens, a
    forged session cookie, a wrong ?access_token=), the answer is a coded 401 (or the login's own 4xx), never
    a 500 and never a 2xx."""
    headers = {"content-type": "application/json"}
    params = None
    try:
        if credential == "cookie":
            headers["cookie"] = f"counter_session={presented}"
        elif credential == "query":
            params = {"access_token": presented}
        elif credential:
            headers["authorization"] = credential
        r = http.request(method, servers.counter + path, content=body, headers=headers, params=params)
    except (UnicodeEncodeError, httpx.LocalProtocolError):   # the client cannot even send such a header or URL
        return
    assert_coded(r)
    if path == "/api/login":
        assert r.status_code in (401, 405, 413, 415, 422, 429), r.text
    else:
        assert r.status_code in (401, 405), (r.status_code, r.text[:200])
