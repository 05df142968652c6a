"""Shared by tests/counter and tests/browser (importable as ``counter.helpers``): signed sample bundles.

The data is the engine's case-file policy and catalogue plus offline limits and a few persons, signed
with a throwaway centre key exactly as the centre publishes them (``sync.bundles.build``).
"""

from __future__ import annotations

import json
from pathlib import Path

from nacl.signing import SigningKey

from sync.bundles import build

CASE = Path(__file__).parents[1] / "data" / "cases" / "class-b-advance-selfpay.json"
LIMITS = {"max_offline_hours": 72, "offline_visit_fund_cap": 20000, "offline_max_visits": 3,
          "offline_acct_allowance": 30000}
CARD_ID = "330300D15600000500BF7A0D1C5E1A2B"
CERTNO = "430000197001011230"  # check character valid (GB 11643)
AMOXICILLIN = "XJ01CAA040E001010101445"   # 阿莫西林胶囊, class A
ATORVASTATIN = "XC10AAA126A001010100971"  # 阿托伐他汀钙片, class B 5 %

PERSONS = [
    {"psn_no": "P0001", "certno": CERTNO, "card_ids": [CARD_ID], "insutype": "310", "psn_type": "working",
     "status": "active", "chronic": [], "balc": 50000, "deductible_used": 20000, "fund_paid": 0},
    {"psn_no": "P0002", "certno": "330302198001011230", "card_ids": ["330300D15600000500BF7A0D1C5E0002"],
     "insutype": "310", "psn_type": "retired", "status": "suspended", "chronic": [], "balc": 1000,
     "deductible_used": 0, "fund_paid": 0},
    {"psn_no": "P0003", "certno": "330302199001011235", "card_ids": ["330300D15600000500BF7A0D1C5E0003"],
     "insutype": "390", "psn_type": "working", "status": "active", "chronic": [], "balc": 0,
     "deductible_used": 0, "fund_paid": 0, "pending_review": True},
]
HOTLISTED = "330300D15600000500BF7A0D1C5E0BAD"
# The virtual card's 张三 (firmware-interfaces/vcard/cards/zhangsan.json, PIN 123456).
VCARD_ID = "330300D15600000500A1B2C3D4E5F607"
PERSONS.append({"psn_no": "P0004", "certno": "330302199001011235", "card_ids": [VCARD_ID], "insutype": "310",
                "psn_type": "working", "status": "active", "chronic": [], "balc": 50000, "deductible_used": 20000,
                "fund_paid": 0})


def case() -> dict:
    return json.loads(CASE.read_text(encoding="utf-8"))


def catalogue_items() -> list[dict]:
    items = case()["catalogue"]
    for it in items:
        it.setdefault("pric", 1280)
    return items


def policy_payload() -> dict:
    return {**case()["policy"], "offline": dict(LIMITS)}


class Centre:
    """A throwaway centre signing key that publishes versioned bundles."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.verify_key = self.key.verify_key
        self.versions: dict[str, int] = {}

    def bundle(self, kind: str, payload: dict, *, base: int | None = None, version: int | None = None,
               created: int = 1_764_000_000_000) -> bytes:
        v = version if version is not None else self.versions.get(kind, 0) + 1
        self.versions[kind] = max(v, self.versions.get(kind, 0))
        return build(self.key, kind=kind, version=v, payload=payload, created=created, base=base)

    def sample(self) -> list[bytes]:
        return [
            self.bundle("catalogue", {"items": catalogue_items()}),
            self.bundle("policy", policy_payload()),
            self.bundle("persons", {"persons": PERSONS}),
            self.bundle("hotlist", {"cards": [{"card_id": HOTLISTED, "reason": "lost"}]}),
        ]


def big_catalogue(n: int) -> list[dict]:
    """n synthetic items with Chinese names (for search speed and memory)."""
    stems = ["阿莫西林", "布洛芬", "二甲双胍", "硝苯地平", "阿托伐他汀", "连花清瘟", "感冒清热", "氨溴索",
             "对乙酰氨基酚", "头孢克肟", "奥美拉唑", "甲硝唑", "维生素", "葡萄糖", "氯化钠", "板蓝根", "复方甘草", "银黄",
             "藿香正气", "六味地黄"]
    forms = ["胶囊", "片", "颗粒", "口服液", "注射液", "软膏", "滴眼液", "缓释片"]
    out = []
    for i in range(n):
        name = f"{stems[i % len(stems)]}{forms[(i // len(stems)) % len(forms)]} {i % 97}mg*{i % 50 + 1}"
        out.append({"code": f"X{i:09d}", "name": name, "class": "ABC"[i % 3], "selfpay_prop": "0.1" if i % 3 == 1 else None,
                    "pric": 100 + i % 5000})
    return out
