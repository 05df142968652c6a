"""Source datasets for ``centre publish``: the shipped sample and large generated sets for benchmarks.

    python -m sync.centre.gen sample DIR                    the realistic sample (sync/centre/sample)
    python -m sync.centre.gen large DIR [--items 100000] [--persons 50000] [--seed 1]

Output files (what :mod:`sync.centre.publish` reads): ``catalogue.json``, ``policy.json``,
``persons.json``, ``hotlist.csv``. Deterministic for a given seed. Money in integer fen, ratios as
text, so nothing passes through a binary float.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "data" / "cases"

# Realistic extra items: (code, name, class, price cap fen or None, selfpay_prop or None)
EXTRA_ITEMS = [
    ("XJ01DCA118A001010101234", "头孢呋辛酯片 0.25g*12", "A", 3200, None),
    ("XR06AEL046A001010100567", "氯雷他定片 10mg*6", "A", 1800, None),
    ("XA02BCA019E001010101088", "奥美拉唑肠溶胶囊 20mg*14", "A", 2200, None),
    ("XC09AAE056A001010100891", "卡托普利片 25mg*100", "A", 900, None),
    ("XC07ABA038A001010101422", "美托洛尔缓释片 47.5mg*7", "B", 3500, "0.10"),
    ("XA10BBB044A001010100753", "格列美脲片 2mg*30", "B", 4200, "0.10"),
    ("XB01ACA065A001010102211", "阿司匹林肠溶片 100mg*30", "A", 1600, None),
    ("XR05DAB072A001010103340", "复方甘草片 *100", "A", 800, None),
    ("ZA06CAC0057010101432", "板蓝根颗粒 10g*20", "A", 2000, None),
    ("ZA09BAL0188010100917", "复方丹参滴丸 27mg*180", "B", 4800, "0.15"),
    ("ZA12EAD0201010102783", "六味地黄丸 200丸", "B", 3000, "0.10"),
    ("XS01AAC026G010010100478", "左氧氟沙星滴眼液 5ml", "A", 2500, None),
    ("XD07ACH037F002010101856", "糠酸莫米松乳膏 5g", "B", 3800, "0.20"),
    ("XM02AAD015P001010100284", "双氯芬酸二乙胺乳胶剂 20g", "B", 2600, "0.10"),
    ("XH03AAL021A001010103112", "左甲状腺素钠片 50μg*100", "A", 3000, None),
    ("XC08CAA110A001010100653", "氨氯地平片 5mg*28", "A", 2800, None),
    ("XA11GAV009A001010102945", "维生素C片 0.1g*100", "C", None, None),
    ("110200001", "一般诊疗费(乡镇卫生院)", "A", 1000, None),
    ("120100001", "肌肉注射", "A", 400, None),
    ("250101001", "血常规检查", "A", 1500, None),
    ("250301001", "血糖测定(快速)", "A", 600, None),
    ("HEALTH-SUPP-0002", "蛋白粉(保健品)", "C", None, None),
]

LEVELS = ("village", "township", "pharmacy")
MED_TYPES = ("11", "13", "14", "41")
OFFLINE = {"max_offline_hours": 72, "offline_visit_fund_cap": 20000, "offline_max_visits": 5,
           "offline_acct_allowance": 50000}


def _plain(v):
    """Decimals read from case files -> text (ratios), never float."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def case_catalogue() -> list[dict]:
    items: dict[str, dict] = {}
    for path in sorted(CASES.glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        for it in case.get("catalogue", []):
            items.setdefault(it["code"], _plain(it))
    return [items[k] for k in sorted(items)]


def sample_catalogue() -> list[dict]:
    items = {it["code"]: it for it in case_catalogue()}
    for code, name, cls, cap, prop in EXTRA_ITEMS:
        it: dict[str, Any] = {"code": code, "name": name, "class": cls, "begndate": "2026-01-01", "enddate": None}
        if cap is not None:
            it["pric_uplmt_amt"] = cap
        if prop is not None:
            it["selfpay_prop"] = prop
        items.setdefault(code, it)
    return [items[k] for k in sorted(items)]


def sample_policy() -> dict:
    """Rules for 310/390 x working/retired x 11/13/14/41 x village/township/pharmacy."""
    rules = []
    for insutype in ("310", "390"):
        for psn_type in ("working", "retired"):
            for med_type in MED_TYPES:
                for level in LEVELS:
                    employee = insutype == "310"
                    retired = psn_type == "retired"
                    # Higher ratio at the village, lower deductible for the retired, none at the pharmacy.
                    ratio = {"village": 70, "township": 65, "pharmacy": 50}[level] + (5 if retired else 0)
                    if not employee:
                        ratio -= 15
                    if med_type == "14":
                        ratio = min(90, ratio + 15)
                    deductible = 0 if level == "pharmacy" or med_type == "14" or not employee else (
                        10000 if retired else 20000)
                    if med_type == "13":
                        deductible = 30000 if employee else 0
                    rules.append({
                        "insutype": insutype, "psn_type": psn_type, "med_type": med_type, "level": level,
                        "deductible": deductible, "ratio": f"0.{ratio:02d}",
                        "annual_cap": (260000 if retired else 220000) if employee else 100000,
                        "visit_cap": 20000 if level == "pharmacy" else None,
                        "acct_allowed": employee,
                    })
    return {"version": "2026.3", "rules": rules, "offline": dict(OFFLINE)}


def ssn_check_digit(first17: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character of a citizen identity number."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights)) % 11]


def certno(region: str, birth: str, serial: int) -> str:
    first = f"{region}{birth}{serial:03d}"
    return first + ssn_check_digit(first)


def card_id(n: int) -> str:
    return f"330300D156000005{n:016X}"


# The three cards of firmware-interfaces/vcard/cards (the demo's virtual cards) come first.
VCARD_PEOPLE = [
    ("张三", "330302199001011235", "330300D15600000500A1B2C3D4E5F607"),
    ("李四", "330303198506152625", "330300D15600000500B7C8D9E0F1A2B3"),
    ("欧阳建国", "330324196212010042", "330300D1560000050011223344556677"),
]
NAMES = ["王芳", "刘伟", "陈静", "杨洋", "赵敏", "黄磊", "周杰", "吴霞", "徐强", "孙丽", "马超", "朱红", "胡军",
         "郭燕", "何平", "林峰", "高翔"]


def sample_persons() -> list[dict]:
    people = []
    for i, (name, ssn, cid) in enumerate(VCARD_PEOPLE):
        people.append((name, ssn, cid))
    for j, name in enumerate(NAMES):
        birth = f"{1950 + j * 3}{(j % 12) + 1:02d}{(j % 27) + 1:02d}"
        people.append((name, certno("330302", birth, 100 + j), card_id(1000 + j)))
    out = []
    for i, (name, ssn, cid) in enumerate(people):
        p = {"psn_no": f"3303000000{i + 1:06d}", "name": name, "certno": ssn, "card_ids": [cid],
             "insutype": "310", "psn_type": "working", "status": "active", "chronic": [],
             "balc": 50000 + 2500 * i, "deductible_used": (i % 4) * 5000, "fund_paid": (i % 3) * 12000,
             "pending_review": False}
        out.append(p)
    # The special people the demo and the tests rely on (by position, documented in docs/sync.md).
    out[2].update(psn_type="retired", balc=128000)                                       # 欧阳建国: retired
    out[3].update(status="suspended")                                                   # 王芳: employer arrears
    out[4].update(pending_review=True)                                                  # 刘伟: bills under review
    out[5].update(chronic=[{"code": "M03900", "begndate": "2026-01-01", "enddate": None}])  # 陈静: chronic filing
    out[6].update(insutype="390", balc=0)                                               # 杨洋: resident 390
    out[7].update(insutype="390", psn_type="retired", balc=0)                           # 赵敏: resident, retired
    out[8].update(balc=-3000)                                                           # 黄磊: account debt
    return out


def sample_hotlist() -> list[dict]:
    return [{"card_id": card_id(9001), "reason": "lost"}, {"card_id": card_id(9002), "reason": "reissued"},
            {"card_id": card_id(1016), "reason": "blocked"}]


def write_sources(out: Path, catalogue, policy, persons, hotlist) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalogue.json").write_text(json.dumps({"items": catalogue}, ensure_ascii=False, indent=1) + "\n",
                                        encoding="utf-8")
    (out / "policy.json").write_text(json.dumps(policy, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "persons.json").write_text(json.dumps({"persons": persons}, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")
    with open(out / "hotlist.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["card_id", "reason"])
        w.writeheader()
        w.writerows(hotlist)


def write_sample(out: Path) -> None:
    write_sources(out, sample_catalogue(), sample_policy(), sample_persons(), sample_hotlist())


_DRUG_STEMS = ["阿莫西林", "头孢克肟", "布洛芬", "对乙酰氨基酚", "二甲双胍", "硝苯地平", "氨氯地平", "阿托伐他汀",
               "奥美拉唑", "氯雷他定", "板蓝根", "连花清瘟", "复方丹参", "六味地黄", "维生素B", "葡萄糖酸钙"]
_FORMS = ["片", "胶囊", "颗粒", "口服液", "缓释片", "肠溶片", "滴丸", "注射液", "乳膏"]


def large_catalogue(n: int, rng: random.Random) -> list[dict]:
    items = []
    for i in range(n):
        cls = rng.choices("ABC", weights=(60, 35, 5))[0]
        code = f"XG{i:09d}{rng.randrange(10**11):011d}"   # drawn before the name: same sequence as always
        name = (f"{rng.choice(_DRUG_STEMS)}{rng.choice(_FORMS)} {rng.choice([5, 10, 20, 50, 100])}mg"
                f"*{rng.choice([6, 12, 24, 30, 48])}")
        it: dict[str, Any] = {"code": code, "class": cls, "name": name, "begndate": "2026-01-01", "enddate": None}
        if rng.random() < 0.5:
            it["pric_uplmt_amt"] = rng.randrange(200, 20000)
        if cls == "B":
            it["selfpay_prop"] = rng.choice(["0.05", "0.10", "0.15", "0.20"])
        items.append(it)
    return items


def large_persons(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        birth = f"{rng.randrange(1940, 2010)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        p = {"psn_no": f"33{i:014d}", "certno": certno("330302", birth, i % 1000), "card_ids": [card_id(100000 + i)],
             "insutype": rng.choice(["310", "310", "390"]), "psn_type": rng.choice(["working", "working", "retired"]),
             "status": "suspended" if rng.random() < 0.01 else "active", "chronic": [],
             "balc": rng.randrange(0, 300000), "deductible_used": rng.randrange(0, 20000),
             "fund_paid": rng.randrange(0, 100000), "pending_review": rng.random() < 0.005}
        if p["insutype"] == "390":
            p["balc"] = 0
        out.append(p)
    return out


def write_large(out: Path, items: int, persons: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    write_sources(out, large_catalogue(items, rng), sample_policy(), large_persons(persons, rng),
                  [{"card_id": card_id(900000 + i), "reason": "lost"} for i in range(max(1, persons // 500))])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sync.centre.gen", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sample", help="write the realistic sample dataset")
    s.add_argument("out", type=Path)
    g = sub.add_parser("large", help="write a large generated dataset (benchmarks)")
    g.add_argument("out", type=Path)
    g.add_argument("--items", type=int, default=100_000)
    g.add_argument("--persons", type=int, default=50_000)
    g.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.what == "sample":
        write_sample(args.out)
    else:
        write_large(args.out, args.items, args.persons, args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
