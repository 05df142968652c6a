"""A HIS as the tests play it: plain httpx and the national envelope, nothing of the project imported.

Kept in its own module so that the end-to-end tests and the benchmark-free field test share one client.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from decimal import Decimal
from typing import Any

import httpx

PATH = "/fsi/api/rsfComIfsService/callService"
FIXMEDINS = "H33030200001"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
ZHANGSAN = {"card_id": "330300D15600000500A1B2C3D4E5F607", "certno": "330302199001011235", "psn_name": "张三"}
LISI = {"card_id": "330300D15600000500B7C8D9E0F1A2B3", "certno": "330303198506152625", "psn_name": "李四"}
BUSI = "330300|330302199001011235|A00000001|330300D15600000500A1B2C3D4E5F607|张三|0081|3.00|20200101|20350101|1|2|"
LINES = [("XJ01CAA040E001010101445", "2", "12.80", "25.60"), ("001102000010000", "1", "10.00", "10.00")]
_seq = itertools.count(1)


def msgid() -> str:
    return f"{FIXMEDINS}{dt.datetime.now():%Y%m%d%H%M%S}{next(_seq) % 10000:04d}"


def envelope(infno: str | None, body: Any, mid: str | None = None) -> dict:
    env = {"infno": infno, "msgid": mid or msgid(), "mdtrtarea_admvs": "330300", "insuplc_admdvs": "330300",
           "recer_sys_code": "YBXT", "dev_no": "", "dev_safe_info": "", "cainfo": "", "signtype": "",
           "infver": "V1.0", "opter_type": "1", "opter": "0001", "opter_name": "王医生",
           "inf_time": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}", "fixmedins_code": FIXMEDINS,
           "fixmedins_name": "测试村卫生室", "sign_no": "", "input": body}
    if infno is None:
        del env["infno"]
    return env


class His:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def raw(self, content: bytes, *, path: str = PATH) -> tuple[int, dict]:
        r = await self.client.post(path, content=content, headers={"Content-Type": "application/json;charset=utf-8"})
        return r.status_code, json.loads(r.content, parse_float=Decimal)

    async def call(self, infno: str, body: Any, *, mid: str | None = None, url_form: bool = False) -> dict:
        env = envelope(None if url_form else infno, body, mid)
        status, out = await self.raw(dumps(env),
                                     path=f"{PATH}/{infno}" if url_form else PATH)
        assert status == 200
        return out

    async def ok(self, infno: str, body: Any, **kw: Any) -> dict:
        out = await self.call(infno, body, **kw)
        assert out["infcode"] == 0, out
        assert out["err_msg"] is None
        return out

    async def refused(self, infno: str, body: Any, **kw: Any) -> dict:
        out = await self.call(infno, body, **kw)
        assert out["infcode"] == -1, out
        assert CHINESE.search(out["err_msg"]), out
        return out

    # -- the steps of a visit -------------------------------------------------------------------------
    async def insert_card(self, who: dict) -> None:
        # Test setup: the simulated card desk stands for the card in the counter's reader.
        r = await self.client.post("/api/card/simulate", json=who)
        assert r.status_code == 200, r.text

    async def head(self) -> int:
        return (await self.client.get("/api/status")).json()["journal"]["head"]

    async def read_card(self, who: dict = ZHANGSAN) -> dict:
        await self.insert_card(who)
        out = await self.ok("1101", {"data": {"mdtrt_cert_type": "03", "mdtrt_cert_no": "A00000001|" + BUSI,
                                              "card_sn": who["card_id"], "psn_cert_type": "90",
                                              "certno": who["certno"], "psn_name": who["psn_name"]}})
        return out["output"]

    async def register(self, psn_no: str, cert: tuple[str, str] = ("03", "A00000001")) -> str:
        out = await self.ok("2201", {"data": {
            "psn_no": psn_no, "insutype": "310", "begntime": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}",
            "mdtrt_cert_type": cert[0], "mdtrt_cert_no": cert[1], "ipt_otp_no": "MZ" + msgid()[-10:],
            "atddr_no": "D001", "dr_name": "王医生", "dept_code": "A01", "dept_name": "全科", "caty": "A01"}})
        return out["output"]["data"]["mdtrt_id"]

    async def diagnose(self, mdtrt_id: str, psn_no: str) -> None:
        now = f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}"
        await self.ok("2203", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": psn_no, "med_type": "11", "begntime": now,
                                             "main_cond_dscr": "咳嗽"},
                               "diseinfo": [{"diag_type": "1", "diag_srt_no": 1, "diag_code": "J00.x00",
                                             "diag_name": "急性鼻咽炎", "diag_dept": "全科", "dise_dor_no": "D001",
                                             "dise_dor_name": "王医生", "diag_time": now, "vali_flag": "1"}]})

    def feedetail(self, mdtrt_id: str, psn_no: str, lines=LINES, bchno: str = "B1") -> list[dict]:
        now = f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}"
        return [{"feedetl_sn": f"{bchno}-{i}", "mdtrt_id": mdtrt_id, "psn_no": psn_no, "chrg_bchno": bchno,
                 "rx_circ_flag": "0", "fee_ocur_time": now, "med_list_codg": code, "medins_list_codg": "L" + code,
                 "det_item_fee_sumamt": Decimal(total), "cnt": Decimal(cnt), "pric": Decimal(pric),
                 "bilg_dept_codg": "A01", "bilg_dept_name": "全科", "bilg_dr_codg": "D001", "bilg_dr_name": "王医生",
                 "hosp_appr_flag": "1"} for i, (code, cnt, pric, total) in enumerate(lines)]

    def setl_data(self, mdtrt_id: str, psn_no: str, medfee: str, *, acct: str = "1", pin: str | None = "123456",
                  cert: tuple[str, str] = ("03", "A00000001")) -> dict:
        d = {"psn_no": psn_no, "mdtrt_cert_type": cert[0], "mdtrt_cert_no": cert[1], "med_type": "11",
             "medfee_sumamt": Decimal(medfee), "psn_setlway": "01", "mdtrt_id": mdtrt_id, "chrg_bchno": "B1",
             "insutype": "310", "acct_used_flag": acct, "invono": "",
             "fulamt_ownpay_amt": Decimal("0"), "overlmt_selfpay": Decimal("0"), "preselfpay_amt": Decimal("0"),
             "inscp_scp_amt": Decimal(medfee)}
        if pin is not None:
            d["pin"] = pin
        return {"data": d}


def dumps(obj: Any) -> bytes:
    """JSON with Decimal amounts written as JSON numbers with their exact digits (what a HIS sends)."""
    def mark(o: Any) -> Any:
        if isinstance(o, Decimal):
            return "\x1enum:" + format(o, "f")
        if isinstance(o, dict):
            return {k: mark(v) for k, v in o.items()}
        if isinstance(o, list):
            return [mark(v) for v in o]
        return o
    text = json.dumps(mark(obj), ensure_ascii=False)
    return re.sub(r'"\\u001enum:(-?[0-9.]+)"', lambda m: m.group(1), text).encode()
