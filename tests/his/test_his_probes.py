"""More attacks on the 两定接口 endpoint from outside (a hostile or careless HIS, plain HTTP): each test is a
finding or a probe that held. The rule every one keeps: HTTP 200, ``infcode`` -1 with a Chinese
``err_msg`` when refused, and the journal moving only by the entries the money needs.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from his.hisclient import CHINESE, His

pytestmark = pytest.mark.slow


@pytest.fixture
async def his(site):
    headers = getattr(site, "headers", None)     # the installation token once the counter asks for one
    async with httpx.AsyncClient(base_url=site.url, trust_env=False, timeout=60, headers=headers) as client:
        yield His(client)


async def test_one_upload_naming_a_fee_line_twice_is_refused(his):
    # Finding: two lines with the same feedetl_sn in one 2204 were both answered in ``result`` but the
    # second silently replaced the first; the HIS booked two lines the visit does not hold.
    psn_no = (await his.read_card())["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    lines = his.feedetail(mdtrt_id, psn_no)
    lines[1]["feedetl_sn"] = lines[0]["feedetl_sn"]
    out = await his.refused("2204", {"feedetail": lines})
    assert "feedetl_sn" in out["err_msg"] or "流水号" in out["err_msg"]
    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})   # the proper upload still goes in


async def test_a_bill_of_thousands_of_lines_is_answered_quickly_and_settles_nothing(his):
    psn_no = (await his.read_card())["baseinfo"]["psn_no"]
    mdtrt_id = await his.register(psn_no)
    lines = his.feedetail(mdtrt_id, psn_no, [("001102000010000", "1", "0.01", "0.01")] * 1500)
    head = await his.head()
    with trio.fail_after(30):
        up = await his.call("2204", {"feedetail": lines})
        assert up["infcode"] == -1 or len(up["output"]["result"]) == 1500, up
        out = await his.refused("2207", his.setl_data(mdtrt_id, psn_no, "25.00"))
    assert CHINESE.search(out["err_msg"]) and "内部错误" not in out["err_msg"]
    assert await his.head() == head
