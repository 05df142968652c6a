"""A HIS plays the national 两定接口 against the real counter daemon (and the real centre) from outside:
plain HTTP, the national envelope, nothing of the project imported (his.hisclient is test code too).

Money checks: every answer's medfee = fund + account + cash; a settlement moves the journal by exactly
one entry; a refused message moves it by none.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import httpx
import pytest

from his.hisclient import BUSI, CHINESE, LISI, PATH, ZHANGSAN, His, dumps, envelope, msgid

pytestmark = pytest.mark.slow


@pytest.fixture
async def his(site):
    async with httpx.AsyncClient(base_url=site.url, trust_env=False, timeout=30, headers=site.headers) as client:
        yield His(client)


def balanced(s: dict, cash: str = "psn_cash_pay") -> None:
    assert s["medfee_sumamt"] == s["fund_pay_sumamt"] + s["acct_pay"] + s[cash], s
    assert s["psn_part_amt"] == s["acct_pay"] + s[cash]


async def _to_fees(his: His, who: dict = ZHANGSAN) -> tuple[str, str]:
    psn_no = (await his.read_card(who))["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    await his.diagnose(mdtrt_id, psn_no)
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    return psn_no, mdtrt_id


async def test_outpatient_visit_from_sign_in_to_cancel(his):
    out = await his.ok("9001", {"signIn": {"opter_no": "0001", "mac": "00-11-22-33-44-55", "ip": "127.0.0.1"}})
    sign_no = out["output"]["signinoutb"]["sign_no"]
    info = await his.read_card()
    assert info["baseinfo"]["psn_no"] == "3303000000000001" and info["baseinfo"]["psn_name"] == "张三"
    assert info["insuinfo"][0]["balc"] == Decimal("500.00")
    psn_no = info["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    await his.diagnose(mdtrt_id, psn_no)
    up = await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    res = up["output"]["result"]
    assert [r["feedetl_sn"] for r in res] == ["B1-0", "B1-1"]
    assert res[0]["chrgitm_lv"] == "01" and res[0]["det_item_fee_sumamt"] == Decimal("25.60")
    assert res[0]["inscp_scp_amt"] == Decimal("25.60") and res[1]["pric_uplmt_amt"] == Decimal("10.00")
    pre = await his.ok("2206", his.setl_data(mdtrt_id, psn_no, "35.60"))
    assert pre["output"]["setlinfo"]["setl_id"] is None
    balanced(pre["output"]["setlinfo"])
    head = await his.head()
    mid = msgid()
    done = await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid=mid)
    assert await his.head() == head + 1
    s = done["output"]["setlinfo"]
    balanced(s)
    assert s["medfee_sumamt"] == Decimal("35.60") and s["medins_setl_id"] == mid and done["warn_msg"] is None
    assert s["acct_pay"] > 0 and s["setl_id"]
    rows = {r["fund_pay_type"]: r["fund_payamt"] for r in done["output"]["setldetail"]}
    assert sum(rows.values()) == s["fund_pay_sumamt"] + s["acct_pay"] and "310200" in rows
    back = await his.ok("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn_no}})
    c = back["output"]["setlinfo"]
    assert c["medfee_sumamt"] == -s["medfee_sumamt"] and c["acct_pay"] == -s["acct_pay"]
    assert c["pdn_cash_pay"] == -s["psn_cash_pay"] and "psn_cash_pay" not in c
    assert c["balc"] == Decimal("500.00")    # the account is refunded
    assert await his.head() == head + 2
    await his.ok("9002", {"signOut": {"sign_no": sign_no, "opter_no": "0001"}})


async def test_the_infno_may_come_in_the_url(his):
    out = await his.ok("9001", {"signIn": {"opter_no": "0001", "mac": "x", "ip": "127.0.0.1"}}, url_form=True)
    assert out["output"]["signinoutb"]["sign_no"]


async def test_pharmacy_sale_in_one_call_and_its_cancel(his):
    psn_no = (await his.read_card())["baseinfo"]["psn_no"]
    now = f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}"
    druginfo = {"psn_no": psn_no, "mdtrt_cert_type": "03", "mdtrt_cert_no": "A00000001", "begntime": now,
                "medfee_sumamt": Decimal("25.60"), "invono": "", "insutype": "310", "acct_used_flag": "1",
                "med_type": "41", "pin": "123456"}
    detail = [{"feedetl_sn": "1", "rxno": "", "rx_circ_flag": "0", "fee_ocur_time": now,
               "med_list_codg": "XJ01CAA040E001010101445", "medins_list_codg": "AMX", "det_item_fee_sumamt":
               Decimal("25.60"), "cnt": Decimal("2"), "pric": Decimal("12.80"), "bilg_dr_codg": "D001",
               "bilg_dr_name": "王医生"}]
    pre = await his.ok("2101", {"druginfo": druginfo, "drugdetail": detail})
    assert pre["output"]["detlcutinfo"][0]["feedetl_sn"] == "1"
    head = await his.head()
    sale = await his.ok("2102", {"druginfo": druginfo, "drugdetail": detail})
    s = sale["output"]["setlinfo"]
    balanced(s)
    assert s["clr_type"] == "41" and await his.head() == head + 1
    assert sale["output"]["detlcutinfo"][0]["inscp_scp_amt"] == Decimal("25.60")
    back = await his.ok("2103", {"data": {"setl_id": s["setl_id"], "mdtrt_id": s["mdtrt_id"], "psn_no": psn_no}})
    c = back["output"]["setlinfo"]
    assert c["psn_pay"] == -s["psn_cash_pay"] and c["cash_payamt"] == c["psn_pay"]
    assert c["medfee_sumamt"] == Decimal("-25.60") and await his.head() == head + 2


async def test_2601_reverses_a_settlement_whose_answer_was_lost(his):
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    lost = msgid()
    await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid=lost)   # the HIS never saw this answer
    assert await his.head() == head + 1
    await his.ok("2601", {"data": {"psn_no": psn_no, "omsgid": lost, "oinfno": "2207"}})
    assert await his.head() == head + 2       # one cancel entry
    await his.ok("2601", {"data": {"psn_no": psn_no, "omsgid": lost, "oinfno": "2207"}})
    assert await his.head() == head + 2       # reversed once only
    info = await his.read_card()
    assert info["insuinfo"][0]["balc"] == Decimal("500.00")
    # The lines are free again: the visit can be settled anew.
    again = await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"))
    balanced(again["output"]["setlinfo"])


async def test_2601_of_a_message_that_never_arrived_refuses_it_later(his):
    psn_no, mdtrt_id = await _to_fees(his)
    never = msgid()
    await his.ok("2601", {"data": {"psn_no": psn_no, "omsgid": never, "oinfno": "2207"}})
    head = await his.head()
    await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid=never)
    assert await his.head() == head


async def test_3201_balanced_and_unbalanced(his):
    psn_no, mdtrt_id = await _to_fees(his)
    s = (await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["output"]["setlinfo"]
    today = f"{dt.datetime.now(dt.timezone(dt.timedelta(hours=8))):%Y-%m-%d}"
    body = {"insutype": "310", "clr_type": "11", "setl_optins": "330300", "stmt_begndate": today,
            "stmt_enddate": today, "medfee_sumamt": s["medfee_sumamt"], "fund_pay_sumamt": s["fund_pay_sumamt"],
            "acct_pay": s["acct_pay"], "fixmedins_setl_cnt": 1, "refd_setl_flag": "0"}
    ok = await his.ok("3201", {"data": body})
    assert ok["output"]["stmtinfo"]["stmt_rslt"] == "0"
    off = await his.ok("3201", {"data": {**body, "medfee_sumamt": s["medfee_sumamt"] + Decimal("0.01")}})
    assert off["output"]["stmtinfo"]["stmt_rslt"] == "1"
    assert CHINESE.search(off["output"]["stmtinfo"]["stmt_rslt_dscr"])


async def test_year_to_date_totals(his):
    psn_no, mdtrt_id = await _to_fees(his)
    before = (await his.ok("5206", {"data": {"psn_no": psn_no}}))["output"]["cuminfo"]
    s = (await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["output"]["setlinfo"]
    after = (await his.ok("5206", {"data": {"psn_no": psn_no}}))["output"]["cuminfo"]
    fund = {r["cum_type_code"]: r["cum"] for r in after}["J001"] - {r["cum_type_code"]: r["cum"] for r in before}["J001"]
    assert fund == s["hifp_pay"]


async def test_the_same_flow_with_the_centre_stopped(his, site):
    await site.stop_centre()
    await his.ok("9001", {"signIn": {"opter_no": "0001", "mac": "00-11-22-33-44-55", "ip": "127.0.0.1"}})
    psn_no, mdtrt_id = await _to_fees(his)
    # The counter learns of the outage when the settlement tries the centre (its probe is an hour here):
    # the pre-settlement is its local estimate either way.
    pre = await his.ok("2206", his.setl_data(mdtrt_id, psn_no, "35.60"))
    balanced(pre["output"]["setlinfo"])
    head = await his.head()
    out = await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60"))
    assert "脱机" in out["warn_msg"] and out["output"]["setlinfo"]["setl_id"]
    balanced(out["output"]["setlinfo"])
    assert await his.head() == head + 1
    back = await his.ok("2208", {"data": {"setl_id": out["output"]["setlinfo"]["setl_id"], "mdtrt_id": mdtrt_id,
                                          "psn_no": psn_no}})
    assert back["output"]["setlinfo"]["pdn_cash_pay"] <= 0


async def test_offline_without_a_card_is_a_full_payment_claim(his, site):
    await his.insert_card(LISI)
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": LISI["certno"],
                                         "psn_cert_type": "01", "certno": LISI["certno"]}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no, ("02", LISI["certno"]))
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    await site.stop_centre()
    head = await his.head()
    mid = msgid()
    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("02", LISI["certno"]))
    refused = await his.refused("2207", body, mid=mid)
    assert "全额" in refused["err_msg"] and "D-" in refused["err_msg"]     # the claim number
    assert await his.head() == head + 1                                    # the claim, journaled once
    again = await his.call("2207", body, mid=mid)
    assert again == refused and await his.head() == head + 1


async def test_a_repeated_msgid_answers_the_same_and_settles_once(his):
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    mid = msgid()
    env = dumps(envelope("2207", his.setl_data(mdtrt_id, psn_no, "35.60"), mid))
    first = await his.client.post(PATH, content=env, headers={"Content-Type": "application/json"})
    second = await his.client.post(PATH, content=env, headers={"Content-Type": "application/json"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and json.loads(first.content)["infcode"] == 0
    assert await his.head() == head + 1
    other = await his.refused("2208", {"data": {"setl_id": "x", "mdtrt_id": mdtrt_id, "psn_no": psn_no}}, mid=mid)
    assert "报文ID" in other["err_msg"]


@pytest.mark.parametrize("content", [
    b'{"msgid": "M1", "input": {}}',                                  # no infno
    b'{"infno": "9999", "msgid": "M2", "input": {}}',                 # unknown infno
    b'{"infno": "2207", "msgid": "M3", "input": ',                    # garbage JSON
    b'{"infno": "2207", "msgid": "M4", "input": [1, 2]}',             # input not an object
    b'{"infno": "2207", "msgid": "M5", "input": "not json"}',         # input a string that is not JSON
    b'{"infno": "2207", "input": {"data": {}}}',                      # no msgid
    b'[1, 2, 3]',                                                      # not an envelope
])
async def test_bad_envelopes_are_refused_in_chinese(his, content):
    head = await his.head()
    status, out = await his.raw(content)
    assert status == 200 and out["infcode"] == -1 and CHINESE.search(out["err_msg"]), out
    assert set(out) >= {"infcode", "inf_refmsgid", "refmsg_time", "respond_time", "err_msg", "output"}
    assert await his.head() == head


async def test_input_as_a_json_string_is_accepted(his):
    out = await his.ok("9001", json.dumps({"signIn": {"opter_no": "1", "mac": "m", "ip": "127.0.0.1"}}))
    assert out["output"]["signinoutb"]["sign_no"]


async def test_three_decimal_amounts_are_refused(his):
    psn_no = (await his.read_card())["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    lines = his.feedetail(mdtrt_id, psn_no, [("XJ01CAA040E001010101445", "2", "12.805", "25.61")])
    out = await his.refused("2204", {"feedetail": lines})
    assert "两位小数" in out["err_msg"]
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    head = await his.head()
    await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "35.600001"))
    assert await his.head() == head


async def test_medfee_disagreeing_with_the_lines_is_refused(his):
    psn_no, mdtrt_id = await _to_fees(his)
    head = await his.head()
    out = await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "35.61"))
    assert "不符" in out["err_msg"]
    assert await his.head() == head


async def test_a_card_other_than_the_one_in_the_reader_is_refused(his):
    await his.insert_card(LISI)
    await his.refused("1101", {"data": {"mdtrt_cert_type": "03", "mdtrt_cert_no": "A00000001|" + BUSI,
                                        "card_sn": ZHANGSAN["card_id"], "psn_cert_type": "90"}})


async def _voucher_visit(his: His, token: str) -> tuple[str, str]:
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token, "psn_cert_type": "01"}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no, ("01", token))
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    return psn_no, mdtrt_id


async def test_e_voucher_online_the_centre_names_the_person(his, site):
    token = site.ec_token("3303000000000002")
    assert len(token) <= 50 and token.startswith("330300ec")
    psn_no, mdtrt_id = await _voucher_visit(his, token)
    assert psn_no == "3303000000000002"
    head = await his.head()
    out = await his.ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("01", token)))
    assert out["warn_msg"] is None and out["output"]["setlinfo"]["mdtrt_cert_type"] == "01"
    balanced(out["output"]["setlinfo"])
    assert await his.head() == head + 1
    forged = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    bad = await his.refused("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": forged}})
    assert "电子凭证无效" in bad["err_msg"]


async def test_e_voucher_offline(his, site):
    token = site.ec_token("3303000000000002")
    psn_no, mdtrt_id = await _voucher_visit(his, token)     # identified while the centre answered
    await site.stop_centre()
    head = await his.head()
    # A visit identified by voucher has no card: offline it becomes a full-payment claim (journaled once).
    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("01", token))
    out = await his.refused("2207", body)
    assert "全额" in out["err_msg"] and await his.head() == head + 1
    # A new voucher cannot be resolved without the centre: the person is not identified yet (a pseudo
    # psn_no, a warning), nothing is journaled; the visit will be a claim carrying the token
    # (tests/his/test_his_ecvoucher.py follows it to the centre).
    fresh = site.ec_token("3303000000000001")
    again = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": fresh}})
    assert "无法连接" in again["warn_msg"] and "全额" in again["warn_msg"]
    assert again["output"]["baseinfo"]["psn_no"] != "3303000000000001" and await his.head() == head + 1
