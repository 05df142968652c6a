#!/usr/bin/env python3
"""Card path latency through the real stack: pyscard -> pcscd -> vpcd -> the virtual card process.

    .venv/bin/python bench/card.py [--reads 300] [--apdus 2000]

Prints median and p99 of
  * identity read via edge.card.read_identity (trio + worker thread, connect .. disconnect, 9 APDUs),
  * the same read via the blocking adapter alone (edge.card.pcsc.run_session),
  * one raw APDU round trip (SELECT on an open connection),
  * the raw round trip with the card's TCP_NODELAY/TCP_QUICKACK turned off (what they save).
Needs pcscd with vsmartcard-vpcd (scripts/services). Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import trio  # noqa: E402

import vcard_support  # noqa: E402
from edge.card import pcsc, profile, read_identity  # noqa: E402


def stats(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms   (n={len(ms)})"


def time_reads(n: int, reader: str) -> tuple[list[float], list[float]]:
    async def run() -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await read_identity(reader)
            out.append(time.perf_counter() - t)
        return out
    via_trio = trio.run(run)
    blocking = []
    for _ in range(n):
        t = time.perf_counter()
        pcsc.run_session(reader)
        blocking.append(time.perf_counter() - t)
    return via_trio, blocking


def time_raw(n: int, reader: str) -> list[float]:
    from smartcard import scard as sc
    rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    rc, hcard, proto = sc.SCardConnect(ctx, reader, sc.SCARD_SHARE_SHARED,
                                       sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
    apdu = list(profile.select_aid())
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            rc, resp = sc.SCardTransmit(hcard, proto, apdu)
            out.append(time.perf_counter() - t)
            assert rc == sc.SCARD_S_SUCCESS and bytes(resp[-2:]) == b"\x90\x00"
    finally:
        sc.SCardDisconnect(hcard, sc.SCARD_LEAVE_CARD)
        sc.SCardReleaseContext(ctx)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=300, help="identity reads per variant")
    ap.add_argument("--apdus", type=int, default=2000, help="raw APDU round trips")
    args = ap.parse_args()
    if not vcard_support.pcsc_available():
        print("bench/card.py: needs pcscd with vsmartcard vpcd readers (run scripts/services as root)",
              file=sys.stderr)
        return 2
    print(f"# card bench {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, {cpu_model()}")
    with vcard_support.virtual_card(vcard_support.SAMPLE_CARD) as card:
        read_identity_warm = trio.run(read_identity, card.reader)
        assert read_identity_warm.name == "张三"
        via_trio, blocking = time_reads(args.reads, card.reader)
        raw = time_raw(args.apdus, card.reader)
    print(f"identity read, read_identity (trio):   {stats(via_trio)}")
    print(f"identity read, pcsc.run_session:       {stats(blocking)}")
    print(f"raw APDU round trip (SELECT):          {stats(raw)}")
    with vcard_support.virtual_card(vcard_support.SAMPLE_CARD, extra_args=("--plain-socket",)) as card:
        plain = time_raw(min(args.apdus, 100), card.reader)
    print(f"raw APDU, no TCP_NODELAY/QUICKACK:     {stats(plain)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
