"""Attacks on the 两定接口 endpoint from outside: a hostile or careless HIS against the real centre and counter
daemons, plain HTTP only. Each test is a finding or a probe that held; every one asserts the rule the
endpoint must keep: HTTP 200, ``infcode`` -1 with a Chinese ``err_msg`` when refused, and the journal
moving by exactly the entries the money needs (one per settlement, cancel or claim; none for a refusal).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from his.hisclient import CHINESE, LINES, LISI, PATH, ZHANGSAN, His, dumps, envelope, msgid

pytestmark = pytest.mark.slow


@pytest.fixture
async def his(site):
    async with httpx.AsyncClient(base_url=site.url, trust_env=False, timeout=30, headers=site.headers) as client:
        yield His(client)


async def _to_fees(his: His, who: dict = ZHANGSAN, lines=LINES) -> tuple[str, str]:
    psn_no = (await his.read_card(who))["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no, lines)})
    return psn_no, mdtrt_id


def _refused_in_chinese(status: int, out: dict) -> None:
    assert status == 200 and out["infcode"] == -1 and CHINESE.search(out["err_msg"] or ""), out
    assert "内部错误" not in out["err_msg"], out     # a hostile body is refused for what it is, not as a crash


# -- one visit, one charge ----------------------------------------------------------------------------
async def test_same_msgid_with_another_cart_is_refused_not_answered_as_the_first(his):
    psn_no, mdtrt_id = await _to_fees(his)
    mid = msgid()
    await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid=mid)
    head = await his.head()
    # The HIS reuses the msgid for another visit's cart: answering the first settlement would let it book
    # a payment for a cart that was never settled.
    psn2, mdtrt2 = await _to_fees(his, LISI)
    out = await his.refused("2207", his.setl_data(mdtrt2, psn2, "35.60"), mid=mid)
    assert "报文ID" in out["err_msg"]
    assert await his.head() == head
    # The same body again is still the same answer (a retry after a timeout).
    again = await his.call("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid=mid)
    assert again["infcode"] == 0 and await his.head() == head


async def test_second_2207_with_a_new_msgid_settles_nothing(his):
    psn_no, mdtrt_id = await _to_fees(his)
    await his.ok("2206", his.setl_data(mdtrt_id, psn_no, "35.60"))
    head = await his.head()
    await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"))
    await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "35.60"))
    assert await his.head() == head + 1


async def test_2208_twice_with_new_msgids_reverses_once(his):
    psn_no, mdtrt_id = await _to_fees(his)
    s = (await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["output"]["setlinfo"]
    head = await his.head()
    cancel = {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn_no}}
    await his.ok("2208", cancel)
    await his.refused("2208", cancel)
    assert await his.head() == head + 1
    # Settled again (the lines are free), then the old setl_id is cancelled again: still refused.
    await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"))
    await his.refused("2208", cancel)
    assert await his.head() == head + 2


async def test_2208_of_another_patients_settlement_is_refused(his):
    psn_no, mdtrt_id = await _to_fees(his)
    s = (await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["output"]["setlinfo"]
    psn2, mdtrt2 = await _to_fees(his, LISI)
    head = await his.head()
    await his.refused("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt2, "psn_no": psn2}})
    await his.refused("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn2}})
    await his.refused("2601", {"data": {"psn_no": psn2, "omsgid": s["medins_setl_id"], "oinfno": "2207"}})
    assert await his.head() == head


async def test_2601_of_a_2208_and_of_a_refusal(his):
    psn_no, mdtrt_id = await _to_fees(his)
    s = (await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["output"]["setlinfo"]
    cancel_mid = msgid()
    await his.ok("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn_no}}, mid=cancel_mid)
    head = await his.head()
    await his.refused("2601", {"data": {"psn_no": psn_no, "omsgid": cancel_mid, "oinfno": "2208"}})
    await his.refused("2601", {"data": {"psn_no": psn_no, "omsgid": cancel_mid, "oinfno": "2207"}})
    assert await his.head() == head


async def test_a_full_payment_claim_consumes_its_lines(his, site):
    # ID-number visit, centre down: the 2207 becomes a full-payment claim (cash taken in full). A later
    # 2207 of the same lines with a new msgid, the centre back, must not settle them with the fund again.
    await his.insert_card(LISI)
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": LISI["certno"],
                                         "psn_cert_type": "01", "certno": LISI["certno"]}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no, ("02", LISI["certno"]))
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    await site.stop_centre()
    head = await his.head()
    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("02", LISI["certno"]))
    claim = await his.refused("2207", body)
    assert "全额" in claim["err_msg"] and await his.head() == head + 1
    await site.start_centre()
    again = await his.refused("2207", body)
    assert "全额" not in again["err_msg"]
    assert await his.head() == head + 1
    # Nor can the visit be withdrawn as if nothing had happened.
    await his.refused("2202", {"data": {"mdtrt_id": mdtrt_id, "psn_no": psn_no}})


# -- money on the wire ----------------------------------------------------------------------------------
HOSTILE_MEDFEE = ['"1e2"', "1e2", "0.1e1", '"NaN"', "NaN", "Infinity", "-Infinity", '"１２.３"', '"١٢"',
                  "1" + "0" * 20, "-35.60", '"35.60 0"', "true", "null", '"0x10"', '"35,60"', "35.59", "35.61",
                  "3.56e1", '"35.60\\u0000"']


async def test_hostile_medfee_is_refused(his):
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    for medfee in HOSTILE_MEDFEE:
        env = dumps(envelope("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))
        env = env.replace(b'"medfee_sumamt": 35.60', b'"medfee_sumamt": ' + medfee.encode())
        assert medfee.encode() in env
        _refused_in_chinese(*await his.raw(env))
    assert await his.head() == head


async def test_tolerable_spellings_of_the_right_amount_settle(his):
    # " 35.60", "35.6", "35.600000" and "-0"-free forms are the same amount: settled once.
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    env = dumps(envelope("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))
    env = env.replace(b'"medfee_sumamt": 35.60', b'"medfee_sumamt": " 35.600000"')
    status, out = await his.raw(env)
    assert status == 200 and out["infcode"] == 0, out
    assert await his.head() == head + 1


HOSTILE_LINES = [
    ("-2", "12.80", "-25.60"),                  # negative count
    ("0", "12.80", "0"),
    ("1.0000001", "10.00", "10.00"),            # 7 decimals: beyond the interface's N(16,4)
    ("1E+999999", "0.00", "0"),                 # an exponent that would expand to a million digits
    ("1e2", "0.10", "10.00"),
    ("２", "12.80", "25.60"),                   # full-width digit
    ("1", "12.80", "12.81"),                    # total off by one fen
]


async def test_hostile_fee_lines_are_refused(his):
    psn_no = (await his.read_card())["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    for cnt, pric, total in HOSTILE_LINES:
        line = his.feedetail(mdtrt_id, psn_no, [("XJ01CAA040E001010101445", "1", "1.00", "1.00")])[0]
        line.update(cnt=cnt, pric=pric, det_item_fee_sumamt=total)
        with trio_fail_after(20):
            out = await his.call("2204", {"feedetail": [line]})
        assert out["infcode"] == -1 and CHINESE.search(out["err_msg"]) and "内部错误" not in out["err_msg"], (cnt, out)


def trio_fail_after(s: float):
    import trio
    return trio.fail_after(s)


# -- hostile bytes -------------------------------------------------------------------------------------
async def test_input_string_holding_invalid_deep_or_surrogate_json(his):
    head = await his.head()
    for inner in ['{"data": ', "[" * 100_000 + "]" * 100_000, '{"signIn": {"opter_no": "\\ud800", "mac": "m"}}',
                  '{"data": {"x": ' * 5000 + "1" + "}}" * 5000, "NaN"]:
        env = json.dumps({"infno": "9001", "msgid": msgid(), "input": inner}).encode()
        _refused_in_chinese(*await his.raw(env))
    assert await his.head() == head


async def test_hostile_envelopes(his):
    head = await his.head()
    deep = b'{"infno": "9001", "msgid": "X1", "input": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    bodies = [
        deep,
        b'{"infno": "9001", "msgid": "X2", "input": {"signIn": {"opter_no": "\\udc00", "mac": "m", "ip": "x"}}}',
        b'{"infno": "9001", "msgid": "X3", "input": {"signIn": {"opter_no": "\xff\xfe", "mac": "m", "ip": "x"}}}',
        '{"infno": "9001", "msgid": "X4", "opter_name": "王医生", "input": {}}'.encode("gbk"),
        json.dumps({"infno": "9001", "msgid": "M" * 10_000, "input": {}}).encode(),
        json.dumps({"infno": "9001", "input": {}}).encode(),
        json.dumps({"infno": "9001", "msgid": 12345, "input": {}}).encode(),
        json.dumps({"infno": ["2207"], "msgid": "X5", "input": {}}).encode(),
        json.dumps({"infno": {"a": 1}, "msgid": "X6", "input": {}}).encode(),
        b'{"infno": "9001", "msgid": "X7", "input": {}, "opter": ' + b"9" * 5000 + b"}",
        b"",
        b"null",
        b'"9001"',
    ]
    for raw in bodies:
        _refused_in_chinese(*await his.raw(raw))
    assert await his.head() == head


async def test_infno_as_a_number_is_served(his):
    env = json.dumps({"infno": 9001, "msgid": msgid(), "input": {"signIn": {"opter_no": "1", "mac": "m",
                                                                             "ip": "127.0.0.1"}}}).encode()
    status, out = await his.raw(env)
    assert status == 200 and out["infcode"] == 0, out


async def test_wrong_content_type_is_still_an_envelope(his):
    env = json.dumps({"infno": "9001", "msgid": msgid(), "input": {"signIn": {"opter_no": "1", "mac": "m",
                                                                               "ip": "127.0.0.1"}}}).encode()
    r = await his.client.post(PATH, content=env, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json()["infcode"] == 0


async def test_a_body_over_the_limit_is_refused(his, site):
    # A raw socket (an HTTP client library would warn about the body it could not finish sending): 10 MB
    # declared and sent; the answer must be an envelope refusing it, without the journal moving.
    import trio

    head = await his.head()
    host, port = site.url.split("//", 1)[1].rsplit(":", 1)
    body = json.dumps({"infno": "9001", "msgid": msgid(), "input": {"x": "a" * (10 * 1024 * 1024)}}).encode()
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                              f"Authorization: Bearer {site.token}\r\n"
                              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        with trio.move_on_after(10):
            try:
                await stream.send_all(body)
            except trio.BrokenResourceError:
                pass                     # the server may close once it has answered
        got = b""
        with trio.fail_after(10):       # the head, then Content-Length bytes (the server may keep the socket)
            while b"\r\n\r\n" not in got:
                got += await stream.receive_some(65536)
            head_text, _, content = got.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head_text).group(1))
            while len(content) < length:
                content += await stream.receive_some(65536)
    assert head_text.startswith(b"HTTP/1.1 200"), head_text
    out = json.loads(content)
    assert out["infcode"] == -1 and "报文过大" in out["err_msg"], out
    assert await his.head() == head


async def test_2208_of_an_id_number_visit_is_cancelled(his):
    # A visit without a card (02): the counter checks the person by certno on cancel; the HIS has none
    # to give, so the endpoint must give the certno it identified the person by.
    await his.insert_card(LISI)
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": LISI["certno"],
                                         "psn_cert_type": "01", "certno": LISI["certno"]}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no, ("02", LISI["certno"]))
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("02", LISI["certno"]))
    s = (await his.ok("2207", body))["output"]["setlinfo"]
    head = await his.head()
    back = await his.ok("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn_no}})
    assert back["output"]["setlinfo"]["medfee_sumamt"] == -s["medfee_sumamt"]
    assert await his.head() == head + 1


async def test_exponent_numbers_are_refused_even_when_exact(his):
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    env = dumps(envelope("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))
    env = env.replace(b'"medfee_sumamt": 35.60', b'"medfee_sumamt": 3.56e1')
    out = (await his.raw(env))[1]
    assert out["infcode"] == -1 and "金额" in out["err_msg"], out
    line = his.feedetail(mdtrt_id, psn_no, [("XJ01CAA040E001010101445", "1", "1.00", "1.00")])[0]
    env = dumps(envelope("2204", {"feedetail": [{**line, "feedetl_sn": "E1", "cnt": "\x00"}]}))
    env = env.replace(b'"cnt": "\\u0000"', b'"cnt": 2.5e0')
    out = (await his.raw(env))[1]
    assert out["infcode"] == -1 and "数量" in out["err_msg"], out
    assert await his.head() == head
