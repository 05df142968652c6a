"""医保电子凭证 (mdtrt_cert_type 01) while the centre is unreachable, played by a HIS from outside.

Offline, a new voucher cannot be resolved to a person: 1101 answers that the person is not identified
yet (infcode 0, a pseudo psn_no, a warn_msg), the visit goes on, and 2207 journals one full-payment
claim carrying the token (infcode -1 with the claim number, as every full payment). When the centre is
back, the counter uploads the claim and the centre resolves the token: the claim is the person's and
is approved like any outage claim; a forged token, or a token of a person the centre does not know,
leaves the claim pending for a reviewer with its code and Chinese reason (never lost).

The HIS speaks plain HTTP (his.hisclient); the review desk is read over its own HTTP API with an
account made by the centre's command, as an operator would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from decimal import Decimal

import httpx
import pytest
import trio

from his.hisclient import CHINESE, His, msgid

pytestmark = pytest.mark.slow

PERSON = "3303000000000002"
CLAIM_NO = re.compile(r"垫付单号([A-Za-z0-9-]+)")


@pytest.fixture
async def his(site):
    async with httpx.AsyncClient(base_url=site.url, trust_env=False, timeout=30, headers=site.headers) as client:
        yield His(client)


class Desk:
    """The centre's review API as a reviewer sees it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def claim(self, claim_no: str) -> dict | None:
        r = await self.client.get(f"/v1/review/claims/{claim_no}")
        return r.json() if r.status_code == 200 else None


@pytest.fixture
async def desk(site):
    # Test setup: the account is made with the centre's own command; the test then only speaks HTTP.
    stack = site._stack
    name, password = "reviewer-ec", uuid.uuid4().hex
    subprocess.run([sys.executable, "-m", "sync.centre", "reviewer", "add", name, "--password-stdin",
                    "--data-dir", str(stack.tmp / "centre")], input=password + "\n", capture_output=True, text=True,
                   check=True, timeout=60)
    base = f"http://127.0.0.1:{stack.centre_port}"
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client:
        yield client, name, password, Desk


async def _login(desk) -> Desk:
    client, name, password, cls = desk
    r = await client.post("/v1/review/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    client.headers["authorization"] = "Bearer " + r.json()["token"]
    return cls(client)


async def _uploaded(his: His) -> None:
    with trio.fail_after(60):
        while (await his.client.get("/api/status")).json()["backlog"]["count"]:
            await trio.sleep(0.2)


async def _decided(desk: Desk, claim_no: str, done) -> dict:
    """The claim at the centre once ``done(claim)`` holds (reconciliation runs every few seconds)."""
    with trio.fail_after(60):
        while True:
            c = await desk.claim(claim_no)
            if c is not None and done(c):
                return c
            await trio.sleep(0.3)


async def _offline_voucher_visit(his: His, token: str) -> tuple[str, str, dict]:
    """1101 -> 2201 -> 2203 -> 2204 -> 2206 with the centre stopped; the pseudo psn_no, the visit, 2206."""
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token, "psn_cert_type": "01"}})
    base = out["output"]["baseinfo"]
    assert "脱机" in out["warn_msg"] and "全额" in out["warn_msg"], out["warn_msg"]
    psn_no = base["psn_no"]
    assert psn_no and psn_no != PERSON and base["certno"] == "" and base["psn_name"] == ""
    # The same token again gives the same pseudo number (a HIS may read the voucher twice).
    again = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token}})
    assert again["output"]["baseinfo"]["psn_no"] == psn_no
    mdtrt_id = await his.register(psn_no, ("01", token))
    await his.diagnose(mdtrt_id, psn_no)
    up = await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
    assert [r["det_item_fee_sumamt"] for r in up["output"]["result"]] == [Decimal("25.60"), Decimal("10.00")]
    pre = await his.ok("2206", his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("01", token)))
    s = pre["output"]["setlinfo"]
    assert s["medfee_sumamt"] == s["psn_cash_pay"] == Decimal("35.60") and s["fund_pay_sumamt"] == 0
    assert "全额" in pre["warn_msg"]
    return psn_no, mdtrt_id, pre


async def _offline_claim(his: His, site, token: str) -> str:
    """The whole offline visit up to its 2207: the claim number, journaled once."""
    psn_no, mdtrt_id, _ = await _offline_voucher_visit(his, token)
    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("01", token))
    head, mid = await his.head(), msgid()
    out = await his.refused("2207", body, mid=mid)
    assert "全额" in out["err_msg"] and "35.60" in out["err_msg"], out["err_msg"]
    found = CLAIM_NO.search(out["err_msg"])
    assert found, out["err_msg"]
    assert await his.head() == head + 1
    # The views of the journal read the claim that names nobody: receipt, reprint, today's visits.
    receipt = (await his.client.get(f"/api/receipt/{head + 1}")).json()
    assert receipt["kind"] == "claim" and receipt["claim_no"] == found.group(1) and receipt["psn_no"] is None
    assert receipt["setlinfo"]["psn_cash_pay"] == receipt["setlinfo"]["medfee_sumamt"] == 3560
    assert receipt["operator"]["id"] == "HIS"        # the installation token's operator took the cash
    for page in (f"/receipt/{head + 1}", "/api/visits"):     # (the shift close is a clerk's page)
        assert (await his.client.get(page)).status_code == 200, page
    # The HIS retries the same msgid: the same answer, nothing journaled again.
    assert await his.call("2207", body, mid=mid) == out and await his.head() == head + 1
    # Another msgid for the same lines: they were consumed by the claim.
    await his.refused("2207", body)
    assert await his.head() == head + 1
    return found.group(1)


async def test_an_offline_voucher_becomes_a_claim_the_centre_credits_to_its_person(his, site, desk):
    person = "3303000000000003"     # past the deductible: the fund pays part of this visit
    token = site.ec_token(person)
    await site.stop_centre()
    claim_no = await _offline_claim(his, site, token)
    await site.start_centre()
    await _uploaded(his)
    reviewer = await _login(desk)
    c = await _decided(reviewer, claim_no, lambda c: c["status"] != "pending")
    assert c["psn_no"] == person and c["medfee"] == 3560, c
    # An outage claim of a known person is approved without a reviewer: the fund's share is owed.
    assert c["status"] == "approved" and c["amount"] == c["split"]["hifp_pay"] > 0, c


@pytest.mark.parametrize("kind, code, words", [
    ("forged", "ec_token_unknown", "电子凭证无效"),
    ("unknown person", "ec_person_unknown", "不在本中心参保人名单"),
])
async def test_an_unresolvable_voucher_claim_waits_for_a_reviewer(his, site, desk, kind, code, words):
    token = site.ec_token(PERSON if kind == "forged" else "3303009999999999")
    if kind == "forged":
        token = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    await site.stop_centre()
    claim_no = await _offline_claim(his, site, token)
    await site.start_centre()
    await _uploaded(his)
    reviewer = await _login(desk)
    c = await _decided(reviewer, claim_no, lambda c: code in (c.get("detail") or ""))
    assert c["status"] == "pending" and c["psn_no"] is None and c["medfee"] == 3560, c
    assert words in c["detail"] and CHINESE.search(c["detail"]), c


async def test_an_offline_voucher_at_the_pharmacy_is_a_full_payment_claim(his, site):
    token = site.ec_token(PERSON)
    await site.stop_centre()
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    druginfo = {"psn_no": psn_no, "mdtrt_cert_type": "01", "mdtrt_cert_no": token, "medfee_sumamt": Decimal("25.60"),
                "insutype": "", "acct_used_flag": "0", "med_type": "41"}
    detail = [{"feedetl_sn": "1", "med_list_codg": "XJ01CAA040E001010101445", "det_item_fee_sumamt": Decimal("25.60"),
               "cnt": Decimal("2"), "pric": Decimal("12.80")}]
    pre = await his.ok("2101", {"druginfo": druginfo, "drugdetail": detail})
    assert "全额" in pre["warn_msg"] and pre["output"]["setlinfo"]["psn_cash_pay"] == Decimal("25.60")
    head = await his.head()
    sale = await his.refused("2102", {"druginfo": druginfo, "drugdetail": detail})
    assert "全额" in sale["err_msg"] and CLAIM_NO.search(sale["err_msg"])
    assert await his.head() == head + 1


async def test_a_voucher_read_offline_is_not_a_person_for_other_transactions(his, site):
    token = site.ec_token(PERSON)
    await site.stop_centre()
    psn_no = (await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token}}))["output"]["baseinfo"][
        "psn_no"]
    out = await his.refused("5206", {"data": {"psn_no": psn_no}})
    assert CHINESE.search(out["err_msg"])


# -- attacks on the offline voucher path (each a finding or a probe that held) ---------------------------
async def _offline_fees(his: His, site, token: str, lines=None) -> tuple[str, str, dict]:
    out = await his.ok("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token}})
    psn_no = out["output"]["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no, ("01", token))
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no, **({"lines": lines} if lines else {}))})
    return psn_no, mdtrt_id, his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None, cert=("01", token))


async def test_a_voucher_claim_cannot_take_the_counters_own_request_ids(his, site):
    # Finding: the claim was journaled under the msgid as its req without the counter's check that a
    # caller's req never starts with "@" (the counter's own key space: "@cancel:N" is the req of the
    # cancel of seq N, so a claim under it would later be answered as that cancel).
    token = site.ec_token(PERSON)
    await site.stop_centre()
    _, _, body = await _offline_fees(his, site, token)
    head = await his.head()
    out = await his.refused("2207", body, mid="@cancel:1")
    assert "@" in out["err_msg"] and await his.head() == head
    await his.refused("2207", body)             # the lines are still there: a proper msgid takes the claim
    assert await his.head() == head + 1


@pytest.mark.parametrize("token", ["330300ec" + "a" * 52, "330300ec\tab", "330300ec abc"])
async def test_a_voucher_token_that_no_claim_could_carry_is_refused_at_1101(his, site, token):
    # Finding: offline, any text up to 100 characters was taken as a voucher and the visit went on,
    # to be refused only at 2207 (a claim's ec_token is at most 50 printable characters).
    await site.stop_centre()
    head = await his.head()
    out = await his.refused("1101", {"data": {"mdtrt_cert_type": "01", "mdtrt_cert_no": token}})
    assert "电子凭证" in out["err_msg"] and await his.head() == head


async def test_a_voucher_bill_longer_than_a_claim_may_be_is_refused_whole(his, site):
    token = site.ec_token(PERSON)
    await site.stop_centre()
    lines = [("001102000010000", "1", "0.01", "0.01")] * 501
    psn_no, mdtrt_id, _ = await _offline_fees(his, site, token, lines)
    head = await his.head()
    out = await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "5.01", acct="0", pin=None, cert=("01", token)))
    assert "内部错误" not in out["err_msg"] and await his.head() == head


async def test_2207_of_another_persons_visit_under_a_voucher_is_refused(his, site):
    token = site.ec_token(PERSON)
    await his.read_card()
    zs = (await his.read_card())["baseinfo"]["psn_no"]
    zs_visit = await his.register(zs)
    await his.ok("2204", {"feedetail": his.feedetail(zs_visit, zs)})
    await site.stop_centre()
    psn_no, _, _ = await _offline_fees(his, site, token)
    head = await his.head()
    out = await his.refused("2207", his.setl_data(zs_visit, psn_no, "35.60", acct="0", pin=None, cert=("01", token)))
    assert "不一致" in out["err_msg"] and await his.head() == head


async def test_a_voucher_claim_of_a_medical_type_the_policy_does_not_know_is_refused(his, site):
    # Finding: the claim was journaled with whatever med_type 2203 gave (the counter's own visits refuse
    # one the policy does not know), so the centre could not compute it.
    token = site.ec_token(PERSON)
    await site.stop_centre()
    psn_no, mdtrt_id, body = await _offline_fees(his, site, token)
    await his.ok("2203", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": psn_no, "med_type": "99",
                                        "begntime": "2026-12-01 09:00:00"}, "diseinfo": []})
    head = await his.head()
    out = await his.refused("2207", body | {"data": {**body["data"], "med_type": ""}})
    assert "就诊类型" in out["err_msg"] and await his.head() == head
