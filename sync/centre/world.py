"""What the pure reconciliation core sees of the store: :class:`StoreWorld` (published bundles, the
hotlist, earlier outcomes and online settlements) and the outcome row <-> :class:`replay.Outcome` mapping.

Both the reconciler (:mod:`sync.centre.reconcile`) and the review queue (:mod:`sync.centre.review`) use
it; neither imports the other for it (the review queue runs after reconciliation, never inside it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping

import cbor2

from edge.settle import InvalidInput, parse_catalogue, parse_policy
from sync.centre import replay as rp


# ------------------------------------------------------------------------------------ regions ---
def site_region(device: str) -> str | None:
    """The region of a device's site: device ids are ``D-<site>-<n>`` and site codes ``S`` + the 6-digit
    region + a serial (``D-S330300001-1`` is in 330300). None when the id does not follow that form (the
    region rule is then off for it)."""
    parts = device.split("-")
    site = parts[1] if len(parts) >= 3 else ""
    region = site[1:7]
    return region if site.startswith("S") and len(region) == 6 and region.isdigit() else None


def card_region(card_id: Any) -> str | None:
    """The issuing region of a card: the first 6 characters of its identification code (None: no card read)."""
    if not isinstance(card_id, str) or len(card_id) < 6 or not card_id[:6].isdigit():
        return None
    return card_id[:6]


# ------------------------------------------------------------------------------------- world ---
def _payload(raw: bytes) -> tuple[dict, dict]:
    env = cbor2.loads(cbor2.loads(raw)["signed"])
    return env, cbor2.loads(env["payload"])


class StoreWorld:
    """:class:`sync.centre.replay.World` over the store: published bundles, hotlist, earlier outcomes.

    Bundles are looked up by the hash the entry recorded and must have the kind and version it names;
    parsed bundles are cached (a centre publishes a handful of versions).
    """

    def __init__(self, store) -> None:
        self.store = store
        self._policies: dict = {}
        self._catalogues: dict = {}
        self._hot: dict | None = None
        # Filled per reconciliation batch by prefetch(): (device, seq) -> time, (device, req) -> row|None.
        self._times: dict = {}
        self._online: dict = {}

    def _bundle(self, kind: str, version: int, digest: str):
        raw = self.store.bundle_by_hash(digest)
        if raw is None:
            return None
        env, payload = _payload(raw)
        if env["kind"] != kind or env["version"] != version:
            return None
        if env["base"] is not None:
            return None  # catalogues are replayed from full bundles only (a delta's hash names a delta)
        return payload

    def policy(self, version, hash):
        key = (version, hash)
        if key not in self._policies:
            p = self._bundle("policy", version, hash)
            try:
                self._policies[key] = parse_policy(p) if p is not None else None
            except InvalidInput:
                self._policies[key] = None
        return self._policies[key]

    def catalogue(self, version, hash):
        key = (version, hash)
        if key not in self._catalogues:
            c = self._bundle("catalogue", version, hash)
            try:
                self._catalogues[key] = parse_catalogue(c) if c is not None else None
            except InvalidInput:
                self._catalogues[key] = None
        return self._catalogues[key]

    def hot(self, card_id):
        # Read once per StoreWorld: a reconciliation pass (or an online request) sees one hotlist.
        if self._hot is None:
            self._hot = hotlist(self.store)
        return self._hot.get(card_id)

    def outcome_of(self, device, seq):
        row = self.store.recon.outcome(device, seq)
        if row is not None and self.store.payouts.cancelled(device, seq):
            # Reversed at the centre (sync/centre/cancel.py): a later counter cancel reverses nothing.
            return replace(outcome_from_row(row), outcome="cancelled_at_centre")
        return None if row is None else outcome_from_row(row)

    def prefetch(self, rows) -> None:
        """Read what replaying this batch of entry rows asks per entry in a few queries: the entries'
        own times and the online answers for their reqs (one query per entry was most of the cost)."""
        self._times = {(r["device"], r["seq"]): r["time"] for r in rows}
        pairs = [(r["device"], r["req"]) for r in rows if isinstance(r.get("req"), str)]
        found = self.store.recon.online_many(pairs)
        self._online = {p: found.get(p) for p in pairs}

    def entry_time(self, device, seq):
        if (device, seq) in self._times:
            return self._times[(device, seq)]
        return self.store.entry_time(device, seq)

    def online(self, device, req):
        row = self._online[(device, req)] if (device, req) in self._online else self.store.recon.online(device, req)
        if row is None:
            return None
        return {"accepted": {k: row["a_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")}}


def hotlist(store) -> dict[str, rp.Hot]:
    """Every card on the current hotlist, with the first version (and its time) that listed it."""
    current: dict[str, rp.Hot] = {}
    for row in store.bundles_of("hotlist"):
        env, payload = _payload(row["raw"])
        if env["base"] is None:
            cards = {c["card_id"]: c for c in payload.get("cards", [])}
            current = {cid: current.get(cid) or rp.Hot(env["version"], row["created_ms"], str(c.get("reason", "")))
                       for cid, c in cards.items()}
        else:
            for c in payload.get("upsert", []):
                current.setdefault(c["card_id"], rp.Hot(env["version"], row["created_ms"], str(c.get("reason", ""))))
            for cid in payload.get("delete", []):
                current.pop(cid, None)
    return current


# ------------------------------------------------------------------------------------- rows ---
def outcome_from_row(row: Mapping[str, Any]) -> rp.Outcome:
    return rp.Outcome(
        device=row["device"], seq=row["seq"], kind=row["kind"], psn_no=row["psn_no"], date=row["date"],
        time=row["time"], outcome=row["outcome"], codes=tuple(json.loads(row["codes"])), reason=row["reason"],
        differs=json.loads(row["differs"]),
        journaled={k: row["j_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")},
        accepted={k: row["a_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")},
        mode=row["mode"], credit=row["credit"], variance=row["variance"], debt=row["debt"])
