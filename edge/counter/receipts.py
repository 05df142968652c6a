"""Receipts: rebuilt from the journal entry alone (plus item names from the cache), so a receipt can be
reprinted any time and always shows what was journaled: the split, the claim number if any, the
entry's seq, its short digest and a QR code of them (``edge.journal.qr_payload``), drawn server-side
as SVG (no script, no network)."""

from __future__ import annotations

import io
from typing import Any

from edge.journal import qr_payload
from edge.offline import CAUSE_ZH

KIND_ZH = {"settlement": "医保结算", "claim": "全额垫付（待审核）", "cancel": "撤销结算",
           "payout": "医保退款（现金支付）"}
MODE_ZH = {"online": "联网结算", "offline": "脱机结算"}


def receipt_view(entry, cache) -> dict[str, Any]:
    b = entry.body
    out: dict[str, Any] = {"seq": entry.seq, "device": entry.device, "digest": entry.digest, "kind": entry.kind,
                           "kind_zh": KIND_ZH.get(entry.kind, entry.kind), "time_ms": entry.time,
                           "qr": qr_payload(entry), "receipt_url": f"/receipt/{entry.seq}",
                           "qr_url": f"/api/receipt/{entry.seq}/qr.svg", "req": b.get("req")}
    names = {}
    for it in b.get("items", []):
        item = cache.item(it["code"]) if cache is not None else None
        names[it["code"]] = (item or {}).get("name", it["code"])
    out["lines"] = [{"med_list_codg": it["code"], "name": names[it["code"]], "cnt": it["cnt"], "pric": it["pric"],
                     "det_item_fee_sumamt": _line_amount(it)} for it in b.get("items", [])]
    if entry.kind == "settlement":
        a = b["amounts"]
        out.update(mode=b["mode"], mode_zh=MODE_ZH[b["mode"]], psn_no=b["psn_no"],
                   setlinfo={**a, "fund_pay_sumamt": a["hifp_pay"], "balc": b["person"]["balc"] - a["acct_pay"]})
    elif entry.kind == "claim":
        p = b["paid"]
        out.update(mode="full_payment", mode_zh="全额垫付", psn_no=b.get("psn_no"), cause=b["cause"],
                   cause_zh=CAUSE_ZH.get(b["cause"], b["cause"]), claim_no=f"{entry.device}-{entry.seq}",
                   setlinfo={"medfee_sumamt": p["medfee_sumamt"], "hifp_pay": 0, "fund_pay_sumamt": 0,
                             "acct_pay": p["acct_pay"], "psn_cash_pay": p["psn_cash_pay"]})
    elif entry.kind == "cancel":
        a = b["amounts"]
        out.update(mode="cancel", mode_zh="撤销", psn_no=b["psn_no"], cancels=b["cancels"],
                   setlinfo={**a, "fund_pay_sumamt": a["hifp_pay"], "balc": b["state_after"]["balc"]})
    elif entry.kind == "payout":
        # Cash handed to the patient: the receipt shows it as paid out, and the patient signs for it.
        out.update(mode="payout", mode_zh="现金退款", psn_no=b["psn_no"], payout_no=b["payout_no"],
                   amount=b["amount"], method=b["method"], reason=b.get("reason", ""),
                   setlinfo={"psn_cash_pay": b["amount"]})
    if isinstance(b.get("operator"), dict):
        out["operator"] = {"id": b["operator"].get("id"), "name": b["operator"].get("name")}
    return out


def _line_amount(item) -> int:
    # Step 1 of the engine (round half up of cnt x pric), exact decimals: the same figure the engine used.
    from decimal import Decimal

    from edge.settle import round_fen
    from edge.settle.money import mul

    return round_fen(mul(Decimal(item["cnt"]), int(item["pric"])))


def qr_svg(text: str) -> bytes:
    import qrcode
    import qrcode.image.svg

    img = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buf = io.BytesIO()
    img.save(buf)
    return buf.getvalue()
