"""Helpers of the diagnose tests: journals and caches in the shapes the other areas write them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from sync.bundles import build
from harness.simulate import pharmacy_sale

LIMITS = {"max_offline_hours": 72, "offline_visit_fund_cap": 20000, "offline_max_visits": 3,
          "offline_acct_allowance": 30000}
CASE = Path(__file__).parents[1] / "data" / "cases" / "class-b-advance-selfpay.json"


def dead_url() -> str:
    """An http URL on loopback where nothing listens (a port the kernel just handed out and freed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fill_journal(journal, n: int, *, time_ms: int | None = None) -> None:
    """Append ``n`` pharmacy sales (the sync simulator's bodies) at ``time_ms`` (default now)."""
    start = journal.head()[0]
    for i in range(start + 1, start + n + 1):
        journal.append("settlement", pharmacy_sale(i, device=journal.device),
                       time_ms=time_ms if time_ms is not None else time.time_ns() // 1_000_000)


def publish_sample_bundles(state: Path, centre_key, now_ms: int, *, refreshed_ms: int | None = None) -> None:
    """Apply catalogue, policy (with offline limits), persons and hotlist signed by the centre key."""
    from edge.cache import Cache

    case = json.loads(CASE.read_text(encoding="utf-8"))
    persons = [{"psn_no": "P0001", "certno": "43000019700101123X", "card_ids": ["330300D15600000500BF7A0D1C5E1A2B"],
                "insutype": "310", "psn_type": "working", "status": "active", "chronic": [], "balc": 50000,
                "deductible_used": 20000, "fund_paid": 0}]
    bundles = [
        build(centre_key, kind="catalogue", version=1, payload={"items": case["catalogue"]}, created=now_ms),
        build(centre_key, kind="policy", version=1, payload={**case["policy"], "offline": dict(LIMITS)}, created=now_ms),
        build(centre_key, kind="persons", version=1, payload={"persons": persons}, created=now_ms),
        build(centre_key, kind="hotlist", version=1, payload={"cards": []}, created=now_ms),
    ]
    cache = Cache.open(state / "cache.db")
    try:
        for raw in bundles:
            cache.apply_bundle(raw, centre_key.verify_key, now_ms=now_ms)
        cache.mark_refreshed(wall_ms=refreshed_ms if refreshed_ms is not None else now_ms,
                             mono_ns=time.monotonic_ns(), boot_id="test")
    finally:
        cache.close()


def corrupt_entry(db: Path, seq: int) -> None:
    """Flip one byte inside the signed bytes of entry ``seq`` (what a bad disk sector does)."""
    conn = sqlite3.connect(db)
    try:
        raw = bytearray(conn.execute("SELECT raw FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
        raw[len(raw) // 2] ^= 0x01
        conn.execute("UPDATE entries SET raw = ? WHERE seq = ?", (bytes(raw), seq))
        conn.commit()
    finally:
        conn.close()


async def eventually(predicate) -> None:
    """Poll the async ``predicate`` until true (callers bound it with ``trio.fail_after``)."""
    import trio

    while not await predicate():
        await trio.sleep(0.05)
