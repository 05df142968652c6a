"""Every output field that HSA-INTERFACE.md section 6 names for the transactions served is in the answer,
with its type. The tables are read from the markdown itself (no copy of the field lists here): a field
added to the facts file is checked without touching this test.

Types: ``C(n)`` text of at most n characters; ``N(p,s)`` a JSON number with at most s decimals; ``D``
yyyy-MM-dd; ``DT`` yyyy-MM-dd HH:mm:ss; ``dict`` a code as text; no type given: present. A field may be
null only where docs/his.md says so (NULLABLE below).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import support
from his.hisclient import His, msgid

FACTS = Path(__file__).resolve().parents[3] / "shared" / "HSA-INTERFACE.md"
TYPE = re.compile(r"\b(C\(\d+\)|N\(\d+,\d+\)|DT|D|dict)(?=[\s;,)]|$)")
NAME = re.compile(r"^[a-z][a-z_0-9]*")
# Null by design (docs/his.md): 2206 has no settlement yet; insurance dates are not in the person bundle.
NULLABLE = {"2206": {"setl_id", "setl_time", "clr_optins", "clr_way", "clr_type"},
            "2101": {"setl_id", "setl_time"},
            "1101": {"psn_insu_date", "paus_insu_date"}}


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else len(text)]


def tables(part: str) -> list[list[list[str]]]:
    """Every markdown table of ``part`` as rows of cells (header and separator rows dropped)."""
    out, cur = [], []
    for line in part.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                cur.append(cells)
        elif cur:
            out.append(cur[1:])
            cur = []
    return out


def typed(desc: str) -> tuple[str, str | None] | None:
    """``"psn_no 人员编号 C(30)"`` -> ("psn_no", "C(30)")."""
    m = NAME.match(desc.strip())
    if m is None:
        return None
    t = TYPE.search(desc)
    return m.group(0), t.group(1) if t else None


def listed(text: str) -> dict[str, str | None]:
    """Fields of a ``;``- or ``,``-separated list in one cell or sentence."""
    out: dict[str, str | None] = {}
    for part in re.split(r"[;,](?![^(]*\))", text):      # not the comma inside N(16,2)
        got = typed(part.replace("`", "").replace("*", "").replace("(+ ", "").replace("and the cash field spelled", ""))
        if got:
            out[got[0]] = got[1]
    return out


def field_tables(text: str) -> dict[tuple[str, str], dict[str, str | None]]:
    """(infno, output node) -> {field: type} for the transactions served."""
    s6 = text[text.index("## 6."):text.index("## 7.")]
    spec: dict[tuple[str, str], dict[str, str | None]] = {}
    # 9001/9002: Direction | Node | Field | Meaning | Type, continuation rows leave Direction/Node empty.
    direction = node = ""
    for row in tables(section(s6, "### 9001"))[0]:
        direction, node = row[0] or direction, row[1] or node
        if direction.endswith(" out"):
            for name in (n.strip() for n in row[2].split(",")):
                spec.setdefault((direction.split()[0], node), {})[name] = typed(name + " " + row[4])[1]
    # 1101 Output: Node | Fields.
    for row in tables(section(s6, "### 1101"))[1]:
        spec[("1101", row[0].rstrip("[]"))] = listed(row[1])
    # 2201 out.
    for row in tables(section(s6, "### 2201"))[0]:
        if row[0] == "2201 out":
            spec[("2201", row[1])] = listed(row[2])
    # 2204 result[]: Field | Meaning | Type (second table of the section).
    result = {}
    for row in tables(section(s6, "### 2204"))[1]:
        for name in row[0].split(","):
            result[name.strip()] = typed(name.strip() + " " + row[2])[1]
    spec[("2204", "result")] = result
    # 2206/2207 setlinfo (second table) and the setldetail sentence.
    part = section(s6, "### 2206")
    setl: dict[str, str | None] = {}
    for row in tables(part)[1]:
        if row[0].startswith("("):
            continue      # province extras
        for name in row[0].split(","):
            setl[name.strip()] = typed(name.strip() + " " + row[2])[1]
    detail = listed(part[part.index("Output `setldetail[]`:") + len("Output `setldetail[]`:"):].splitlines()[0])
    for infno in ("2206", "2207"):
        spec[(infno, "setlinfo")], spec[(infno, "setldetail")] = dict(setl), dict(detail)
    # 2208: a sentence naming the fields (types as in 2207).
    part = section(s6, "### 2208")
    sentence = part[part.index("Output `setlinfo`:") + len("Output `setlinfo`:"):part.index("Plus `setldetail[]`")]
    names = listed(re.sub(r"\s\([^)]*\)", "", sentence))     # "(BZ and TH both; ...)" is a remark
    cancel = {n: setl.get(n, "N(16,2)" if n.endswith("_pay") else None) for n in names}
    spec[("2208", "setlinfo")], spec[("2208", "setldetail")] = cancel, dict(detail)
    # Pharmacy: 2207 shape + detlcutinfo in the 2204 result shape; 2103 the 2208 shape, cash as psn_pay/cash_payamt.
    for infno in ("2101", "2102"):
        spec[(infno, "setlinfo")], spec[(infno, "setldetail")] = dict(setl), dict(detail)
        spec[(infno, "detlcutinfo")] = dict(result)
    pharm = {k: v for k, v in cancel.items() if k != "pdn_cash_pay"}
    spec[("2103", "setlinfo")] = {**pharm, "psn_pay": "N(16,2)", "cash_payamt": "N(16,2)"}
    spec[("2103", "setldetail")] = dict(detail)
    # 3201 out.
    for row in tables(section(s6, "### 3201"))[0]:
        if row[0] == "out":
            spec[("3201", row[1])] = listed(row[2])
    # 5206: "Out `cuminfo[]`: insutype, year, cum_ym, cum_type_code 累计类别代码, cum (amount)."
    part = section(s6, "### 5205")
    line = next(ln for ln in part.splitlines() if "`cuminfo[]`:" in ln)
    line = line[line.index("`cuminfo[]`:") + len("`cuminfo[]`:"):]
    cum = listed(line[:line.index(".")])
    spec[("5206", "cuminfo")] = {**cum, "cum": "N(16,2)"}    # "cum (amount)"
    return spec


def check(value, kind: str | None, where: str, nullable: bool) -> None:
    if value is None:
        assert nullable, f"{where} is null"
        return
    if kind is None:
        return
    if kind.startswith("C("):
        assert isinstance(value, str) and len(value) <= int(kind[2:-1]), f"{where}: {value!r} is not {kind}"
    elif kind == "dict":
        assert isinstance(value, str), f"{where}: {value!r} is not a code (text)"
    elif kind.startswith("N("):
        scale = int(kind[:-1].split(",")[1])
        assert isinstance(value, (int, Decimal)) and not isinstance(value, bool), f"{where}: {value!r} is not {kind}"
        assert isinstance(value, int) or -value.as_tuple().exponent <= scale, f"{where}: {value} has too many places"
    elif kind == "DT":
        assert isinstance(value, str), where
        dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    elif kind == "D":
        assert isinstance(value, str), where
        dt.date.fromisoformat(value)


def test_the_tables_are_read():
    support.require(f"the interface facts at {FACTS}", FACTS.exists())
    spec = field_tables(FACTS.read_text(encoding="utf-8"))
    assert spec[("2207", "setlinfo")]["medfee_sumamt"] == "N(16,2)"
    assert spec[("2208", "setlinfo")]["pdn_cash_pay"] == "N(16,2)"
    assert spec[("1101", "baseinfo")]["brdy"] == "D"
    assert spec[("9001", "signinoutb")] == {"sign_time": "DT", "sign_no": "C(30)"}
    assert spec[("2204", "result")]["selfpay_prop"] == "N(5,4)"
    assert set(spec[("3201", "stmtinfo")]) == {"setl_optins", "stmt_rslt", "stmt_rslt_dscr"}


async def _answers(his: His) -> dict[str, dict]:
    """One of each served transaction, in a realistic order; their outputs by infno."""
    got: dict[str, dict] = {}

    async def ok(infno, body):
        out = await his.ok(infno, body)
        got[infno] = out["output"]
        return out["output"]

    sign_no = (await ok("9001", {"signIn": {"opter_no": "1", "mac": "m", "ip": "127.0.0.1"}}))["signinoutb"]["sign_no"]
    await ok("9002", {"signOut": {"sign_no": sign_no, "opter_no": "1"}})
    got["1101"] = await his.read_card()
    psn_no = got["1101"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    got["2201"] = {"data": {"mdtrt_id": mdtrt_id, "psn_no": psn_no, "ipt_otp_no": "x", "exp_content": ""}}
    got["2201"] = (await his.ok("2201", {"data": {
        "psn_no": psn_no, "insutype": "310", "begntime": "2026-12-01 08:00:00", "mdtrt_cert_type": "03",
        "mdtrt_cert_no": "A00000001", "ipt_otp_no": "MZ1", "atddr_no": "D1", "dr_name": "王", "dept_code": "A",
        "dept_name": "全科", "caty": "A01"}}))["output"]
    await ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    await ok("2206", his.setl_data(mdtrt_id, psn_no, "35.60"))
    s = (await ok("2207", his.setl_data(mdtrt_id, psn_no, "35.60")))["setlinfo"]
    await ok("2208", {"data": {"setl_id": s["setl_id"], "mdtrt_id": mdtrt_id, "psn_no": psn_no}})
    druginfo = {"psn_no": psn_no, "mdtrt_cert_type": "03", "mdtrt_cert_no": "A00000001", "begntime": "",
                "medfee_sumamt": Decimal("25.60"), "insutype": "310", "acct_used_flag": "1", "med_type": "41",
                "pin": "123456"}
    detail = [{"feedetl_sn": "1", "rx_circ_flag": "0", "fee_ocur_time": "2026-12-01 08:00:00",
               "med_list_codg": "XJ01CAA040E001010101445", "medins_list_codg": "A", "det_item_fee_sumamt":
               Decimal("25.60"), "cnt": Decimal("2"), "pric": Decimal("12.80")}]
    await ok("2101", {"druginfo": druginfo, "drugdetail": detail})
    p = (await ok("2102", {"druginfo": druginfo, "drugdetail": detail}))["setlinfo"]
    await ok("2103", {"data": {"setl_id": p["setl_id"], "mdtrt_id": p["mdtrt_id"], "psn_no": psn_no}})
    today = f"{dt.datetime.now(dt.timezone(dt.timedelta(hours=8))):%Y-%m-%d}"
    await ok("3201", {"data": {"insutype": "310", "clr_type": "11", "setl_optins": "330300", "stmt_begndate": today,
                               "stmt_enddate": today, "medfee_sumamt": 0, "fund_pay_sumamt": 0, "acct_pay": 0,
                               "fixmedins_setl_cnt": 0}})
    await ok("5206", {"data": {"psn_no": psn_no, "cum_ym": "202612"}})
    assert msgid()
    return got


@pytest.mark.slow
async def test_every_output_field_of_section_6_is_present_with_its_type(site):
    support.require(f"the interface facts at {FACTS}", FACTS.exists())
    spec = field_tables(FACTS.read_text(encoding="utf-8"))
    async with httpx.AsyncClient(base_url=site.url, trust_env=False, timeout=30, headers=site.headers) as client:
        got = await _answers(His(client))
    checked = 0
    for (infno, node), fields in sorted(spec.items()):
        assert infno in got, f"{infno} was not exercised"
        value = got[infno].get(node)
        assert value is not None, f"{infno}: output node {node} is missing"
        rows = value if isinstance(value, list) else [value]
        if node == "idetinfo":
            assert isinstance(value, list)   # the person bundle has no identity categories: an empty list
            continue
        assert rows, f"{infno}.{node} is empty"
        for row in rows:
            for name, kind in fields.items():
                assert name in row, f"{infno}.{node}.{name} is missing"
                check(row[name], kind, f"{infno}.{node}.{name}", name in NULLABLE.get(infno, set()))
                checked += 1
    assert checked > 200
