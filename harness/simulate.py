"""Simulated devices for tests and benchmarks: real signed journal entries, no files.

``SimDevice`` signs entries exactly as the edge journal does (``edge.journal.entry.make_entry``);
``pharmacy_sale`` builds the body of a 3-line pharmacy sale with :mod:`sync.bodies`' builder, so wire
sizes measured with it are those of a real sale.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from edge.journal.entry import GENESIS, Entry, make_entry
from sync import bodies

_ITEMS = [("XJ01CAA040E001010101445", 1280), ("XM01AEB023N001010104051", 1450), ("ZA01AAJ0129010101987", 2200),
          ("XN02BEA015A001010100019", 650), ("XC10AAA126A001010100971", 2345), ("ZA04BAA0001010100015", 1420)]


def pharmacy_sale(n: int, *, device: str = "D-S330300001-1", lines: int = 3) -> dict:
    """Body of the ``n``-th offline pharmacy sale (3 lines by default), amounts consistent."""
    picked = [(_ITEMS[(n + i) % len(_ITEMS)], 1 + (n + i) % 3) for i in range(lines)]
    medfee = sum(cnt * pric for (_, pric), cnt in picked)
    fund = medfee // 2
    acct = min(3000, medfee - fund)
    psn = f"3303{(n * 7919) % 10**14:014d}"
    amounts = dict.fromkeys(bodies.AMOUNT_KEYS, 0) | {"medfee_sumamt": medfee, "inscp_scp_amt": medfee,
                                                      "hifp_pay": fund, "acct_pay": acct,
                                                      "psn_cash_pay": medfee - fund - acct}
    return bodies.Settlement(
        req=f"POS-{device[-6:]}-{n:06d}", mode="offline", psn_no=psn,
        card=bodies.Card(f"330300D1560000{n % 10**6:06d}", keyed_in=False),
        visit=bodies.Visit("41", "pharmacy", dt.date(2026, 11, 24), acct_used_flag=True),
        items=tuple(bodies.Item(code, str(cnt), pric) for (code, pric), cnt in picked),
        person=bodies.Person("310", "working", "active", (), balc=50000, deductible_used=0, fund_paid=0),
        acct_limit=50000, amounts=amounts,
        result_sha256=hashlib.sha256(f"{device}:{n}".encode()).digest()[:16],
        basis=bodies.Basis(
            catalogue=bodies.BundleRef(12, "9f" * 32), policy=bodies.BundleRef(3, "7a" * 32, "2026.3"),
            persons=bodies.BundleRef(40), hotlist=bodies.BundleRef(9),
            limits={"cache_age_hours": (5, 72), "visit_fund": (fund, 20000), "offline_visits": (1, 5),
                    "acct_allowance_left": (50000 - acct, 50000)}),
    ).build()


@dataclass
class SimDevice:
    """A device's key and journal head, in memory."""

    device: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    entries: list[Entry] = field(default_factory=list)
    time0: int = 1_764_000_000_000

    @property
    def pubkey(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def head(self) -> tuple[int, bytes]:
        return (self.entries[-1].seq, self.entries[-1].hash) if self.entries else (0, GENESIS)

    def append(self, kind: str = "settlement", body: dict | None = None) -> Entry:
        seq, prev = self.head
        body = pharmacy_sale(seq + 1, device=self.device) if body is None else body
        e = make_entry(self.key, seq=seq + 1, prev=prev, device=self.device, time=self.time0 + seq * 60_000,
                       mono=seq * 60_000_000_000, kind=kind, body=body)
        self.entries.append(e)
        return e

    def extend(self, n: int) -> list[Entry]:
        return [self.append() for _ in range(n)]

    def items(self, start: int = 1, stop: int | None = None) -> list[tuple[int, bytes]]:
        """(seq, raw) pairs for seqs start..stop inclusive: what an upload carries."""
        stop = len(self.entries) if stop is None else stop
        return [(e.seq, e.raw) for e in self.entries[start - 1:stop]]
