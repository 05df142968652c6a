"""The centre's store API over :mod:`.db` (same code on SQLite and PostgreSQL).

All methods are blocking; trio code calls them through ``trio.to_thread.run_sync``. Time is an
argument (``now_ms``) wherever it matters, so tests can steer it.

Durability rule: :meth:`Store.put_checked` commits entries, rejections and the device's new
``high_water`` in ONE transaction and only then returns the ack; the HTTP handler answers after
that, so nothing acknowledged can be lost.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, ContextManager, Iterable

import cbor2
from nacl.signing import VerifyKey

from edge.journal.entry import GENESIS
from sync import bundles as _bundles
from sync.centre import ingest
from sync.centre.lru import LRU
from sync.errors import BadEnrolmentToken, DeviceRevoked, ReplayedRequest, StoreConflict, UnknownDevice

from . import schema
from .accounts import Accounts
from .claims import Claims
from .db import Database, open_db
from .ledger import Ledgers
from .restore import Restores
from .security import Security
from .payouts import Payouts
from .recon import QUEUED_KINDS, Recon, bucket_of


PARSED_MAX = 16   # a few catalogue/policy versions in use at once, plus the hotlist


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device: str
    site: str
    pubkey: bytes
    status: str
    high_water: int
    enrolled_ms: int

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.pubkey)

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    device: str
    ack: int                       # highest contiguous seq settled (durably) at the centre
    results: list[ingest.Result]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


def _device_row(row: dict | None) -> DeviceInfo | None:
    if row is None:
        return None
    return DeviceInfo(row["device"], row["site"], bytes(row["pubkey"]), row["status"], row["high_water"],
                      row["enrolled_ms"])


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    """The centre's durable state. ``Store.open(url)`` applies migrations.

    Devices, enrolment, entries, bundles and the downlink feed are methods of the store itself; the
    other areas are repositories on it, each the only code that writes its tables' SQL:
    ``ledger`` (:class:`.ledger.Ledgers`), ``recon`` (:class:`.recon.Recon`), ``claims``
    (:class:`.claims.Claims`), ``accounts`` (:class:`.accounts.Accounts`). Code outside ``store/``
    uses these and :meth:`transaction`, never ``db`` itself.
    """

    def __init__(self, db: Database, *, migrate: bool = True) -> None:
        self.db = db
        if migrate:
            schema.migrate(db)
        self.ledger = Ledgers(db)
        self.recon = Recon(db)
        self.claims = Claims(db)
        self.accounts = Accounts(db, self.ledger)
        self.restores = Restores(db)   # restore epoch (backup/restore, store/restore.py)
        self.security = Security(db)   # failed reviewer logins (store/security.py)
        self.payouts = Payouts(db)     # cancels at the centre (store/payouts.py)
        # Parsed bundles (by hash) and the current hotlist (by version), for online settlement.
        self.parsed: LRU[Any] = LRU(PARSED_MAX)
        # Times of the entries of the last reconciliation batch and of their predecessors (queued_entries).
        self._times: dict[tuple[str, int], int] = {}

    @classmethod
    def open(cls, url_or_path, *, migrate: bool = True) -> "Store":
        """``migrate=False``: a worker of a deployed centre; ``centre migrate`` applies the schema first."""
        return cls(open_db(url_or_path), migrate=migrate)

    def sibling(self) -> "Store":
        """The same database on a new connection (the reconciler's, so request handlers never wait on
        the connection a reconciliation batch holds)."""
        db = self.db.reopen()
        return self if db is self.db else Store(db, migrate=False)

    def pending_migrations(self) -> list[str]:
        return schema.pending(self.db)

    # -- database-wide settings ------------------------------------------------------------------
    def setting(self, name: str) -> str | None:
        return self.db.scalar("SELECT value FROM centre_settings WHERE name = ?", (name,))

    def settle_setting(self, name: str, value: str, *, now: int | None = None) -> str:
        """Record ``value`` under ``name`` unless one is recorded already; returns the recorded value
        (the first writer wins, so every worker can compare its own against it)."""
        now = now_ms() if now is None else now
        self.db.execute("INSERT INTO centre_settings (name, value, set_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (name, value, now))
        v = self.setting(name)
        assert v is not None  # inserted just above, or already there
        return v

    @property
    def backend(self) -> str:
        return self.db.backend

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> ContextManager[Database]:
        """One transaction over several repository calls (nested: a savepoint)."""
        return self.db.transaction()

    # -- devices and enrolment ---------------------------------------------------------------------
    def create_enrol_token(self, site: str, *, ttl_ms: int = 7 * 86_400_000, now: int | None = None) -> str:
        now = now_ms() if now is None else now
        token = "ET-" + secrets.token_urlsafe(18)
        self.db.execute("INSERT INTO enrol_tokens (token_hash, site, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
                        (_token_hash(token), site, now, now + ttl_ms))
        return token

    def enrol(self, token: str, pubkey: bytes, *, now: int | None = None) -> DeviceInfo:
        """Spend a one-time token: register ``pubkey`` as a new device of the token's site."""
        now = now_ms() if now is None else now
        with self.db.transaction():
            row = self.db.query_one("SELECT * FROM enrol_tokens WHERE token_hash = ?", (_token_hash(token),))
            if row is None:
                raise BadEnrolmentToken("unknown enrolment token: check it was typed exactly, or ask the centre "
                                        "for a new one (`centre enroll-token --site ...`)")
            if row["used_by"] is not None:
                existing = self.device(row["used_by"])
                if existing is not None and existing.pubkey == bytes(pubkey):
                    return existing  # the same device retrying after a lost answer: idempotent
                raise BadEnrolmentToken(f"this enrolment token was already used by {row['used_by']}: tokens are "
                                        "one-time; ask the centre for a new one")
            if row["expires_ms"] < now:
                raise BadEnrolmentToken("this enrolment token has expired: ask the centre for a new one")
            site = row["site"]
            n = self.db.scalar("SELECT count(*) FROM devices WHERE site = ?", (site,)) + 1
            device = f"D-{site}-{n}"
            while True:
                while self.db.query_one("SELECT device FROM devices WHERE device = ?", (device,)):
                    n += 1
                    device = f"D-{site}-{n}"
                try:
                    # A savepoint: a simultaneous enrolment of the same site may take this number
                    # first (its insert commits while ours waits on the key); take the next one.
                    with self.db.transaction():
                        info = self.register_device(device, site, pubkey, now=now)
                    break
                except StoreConflict:
                    n += 1
                    device = f"D-{site}-{n}"
            self.db.execute("UPDATE enrol_tokens SET used_by = ?, used_ms = ? WHERE token_hash = ?",
                            (device, now, _token_hash(token)))
            return info

    def register_device(self, device: str, site: str, pubkey: bytes, *, now: int | None = None) -> DeviceInfo:
        now = now_ms() if now is None else now
        if len(pubkey) != 32:
            raise StoreConflict("a device public key is 32 bytes (Ed25519)")
        self.db.execute("INSERT INTO devices (device, site, pubkey, status, enrolled_ms, high_water, last_hash) "
                        "VALUES (?, ?, ?, 'active', ?, 0, ?)", (device, site, bytes(pubkey), now, GENESIS))
        info = self.device(device)
        assert info is not None  # inserted just above
        return info

    def device(self, device: str) -> DeviceInfo | None:
        return _device_row(self.db.query_one("SELECT * FROM devices WHERE device = ?", (device,)))

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(r["device"], r["site"], bytes(r["pubkey"]), r["status"], r["high_water"], r["enrolled_ms"])
                for r in self.db.query("SELECT * FROM devices ORDER BY device")]

    def sites_of(self, devices: Iterable[str]) -> dict[str, str]:
        """device -> site for the given devices (one query per 500; a batch names only its own)."""
        names = sorted(set(devices))
        out: dict[str, str] = {}
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            out.update({r["device"]: r["site"] for r in self.db.query(
                f"SELECT device, site FROM devices WHERE device IN ({marks})", chunk)})
        return out

    def require_device(self, device: str) -> DeviceInfo:
        info = self.device(device)
        if info is None:
            raise UnknownDevice(f"device {device!r} is not enrolled at this centre: a new counter enrols with "
                                "`edge enroll URL TOKEN`; one enrolled after the backup this centre was "
                                "restored from is registered here (`centre register DEVICE --site S --pubkey KEY`)")
        if not info.active:
            raise DeviceRevoked(f"device {device} was revoked at the centre: its uploads are refused; "
                                "contact the centre to re-enrol it")
        return info

    def revoke_device(self, device: str) -> None:
        self.db.execute("UPDATE devices SET status = 'revoked' WHERE device = ?", (device,))

    def use_nonce(self, device: str, nonce: str, ts_ms: int, *, keep_ms: int) -> None:
        """Record a request nonce; a nonce seen before is a replay. Old nonces are pruned (their
        timestamps are outside the accepted skew, so a replay of them fails the time check)."""
        n = self.db.execute("INSERT INTO nonces (device, nonce, ts_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                            (device, nonce, ts_ms))
        if n == 0:
            raise ReplayedRequest("this request was already received (same nonce): replays are refused; "
                                  "if the device is retrying, it must sign a fresh request")
        if secrets.randbelow(200) == 0:
            self.db.execute("DELETE FROM nonces WHERE ts_ms < ?", (ts_ms - keep_ms,))

    # -- entries -------------------------------------------------------------------------------------
    def put_entries(self, device: str, items: Iterable[tuple[int, bytes]], *, now: int | None = None) -> BatchOutcome:
        info = self.require_device(device)
        checked = ingest.check_entries(items, device, info.verify_key)
        return self.put_checked(device, checked, now=now)

    def put_checked(self, device: str, checked: list[ingest.Checked], *, now: int | None = None) -> BatchOutcome:
        """Plan and commit a verified batch in one transaction; returns the ack after the commit."""
        now = now_ms() if now is None else now
        with self.db.transaction():
            row = self.db.query_one({
                "sqlite": "SELECT high_water, last_hash, status FROM devices WHERE device = ?",
                "postgres": "SELECT high_water, last_hash, status FROM devices WHERE device = ? FOR UPDATE",
            }, (device,))
            if row is None:
                raise UnknownDevice(f"device {device!r} is not enrolled at this centre")
            if row["status"] != "active":
                raise DeviceRevoked(f"device {device} was revoked at the centre")
            hw = row["high_water"]
            last = bytes(row["last_hash"]) if row["last_hash"] is not None else None
            seqs = [c.seq for c in checked if c.seq <= hw]
            stored: dict[int, tuple[str, Any]] = {}
            if seqs:
                lo, hi = min(seqs), max(seqs)
                for r in self.db.query("SELECT seq, hash FROM entries WHERE device = ? AND seq BETWEEN ? AND ?",
                                       (device, lo, hi)):
                    stored[r["seq"]] = ("entry", bytes(r["hash"]))
                for r in self.db.query("SELECT seq, code FROM rejections WHERE device = ? AND slot = 1 AND "
                                       "seq BETWEEN ? AND ?", (device, lo, hi)):
                    stored.setdefault(r["seq"], ("rejected", r["code"]))
            p = ingest.plan(checked, high_water=hw, last_hash=last, stored=stored)
            if p.accept:
                # executemany (psycopg pipelines it): measured faster than one INSERT from unnest(arrays), whose
                # bytea arrays travel as text (bench/RESULTS.md, drain after the batching round).
                self.db.executemany(
                    "INSERT INTO entries (device, seq, kind, time, psn_no, req, hash, raw, chain_checked, received_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(device, e.seq, e.kind, e.time, _text(e.body.get("psn_no")), _text(e.body.get("req")),
                      e.hash, e.raw, 1 if ok else 0, now) for e, ok in p.accept])
                self._enqueue(device, [e for e, _ in p.accept])
            if p.reject:
                self.db.executemany(
                    "INSERT INTO rejections (device, seq, code, message, slot, raw, received_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(device, seq, code, msg, 1 if slot else 0, raw, now) for seq, code, msg, slot, raw in p.reject])
            self.db.execute("UPDATE devices SET high_water = ?, last_hash = ?, last_seen_ms = ? WHERE device = ?",
                            (p.high_water, p.last_hash, now, device))
        return BatchOutcome(device, p.high_water, p.results)

    def _enqueue(self, device: str, accepted: list) -> None:
        """Put the batch's reconcilable entries on the work queue, each under its person's bucket, in
        the ingest transaction: an entry is stored and queued together, whatever the commit order."""
        todo = [e for e in accepted if e.kind in QUEUED_KINDS]
        if not todo:
            return
        rows = []
        for e in todo:
            body = e.body if isinstance(e.body, dict) else {}
            psn = _text(body.get("psn_no"))
            if psn is None and e.kind == "claim":
                # A claim with only a certno: the person is resolved now when known (the reconciler
                # resolves it the same way), else the certno is its own bucket.
                certno = _text(body.get("certno"))
                psn = self.ledger.psn_by_certno(certno) or (f"certno:{certno}" if certno else None)
            rows.append((e.seq, bucket_of(psn if psn is not None else f"device:{device}")))
        self.recon.enqueue_seqs(device, rows)

    def queued_entries(self, buckets: list[int], limit: int) -> list[dict]:
        """Queued entries of ``buckets`` (claimed by the caller), oldest first, ``body`` decoded."""
        rows = self.recon.queued(buckets, limit)
        times: dict[tuple[str, int], int] = {}
        for r in rows:
            r["raw"] = bytes(r["raw"])
            r["body"] = cbor2.loads(r["raw"])["body"]
            times[(r["device"], r["seq"])] = r["time"]
            prev = r.pop("prev_time")
            if prev is not None:
                times[(r["device"], r["seq"] - 1)] = prev
        # Stored entries never change: :meth:`entry_time` answers the batch's from memory.
        self._times = times
        return rows

    def entry_time(self, device: str, seq: int) -> int | None:
        """The time an accepted entry of ``device`` carries (replay checks a chain's times never go back)."""
        if (device, seq) in self._times:
            return self._times[(device, seq)]
        if seq < 1:
            return None   # a journal starts at seq 1: the first entry has no predecessor to ask for
        return self.db.scalar("SELECT time FROM entries WHERE device = ? AND seq = ?", (device, seq))

    def high_water(self, device: str) -> int:
        v = self.db.scalar("SELECT high_water FROM devices WHERE device = ?", (device,))
        if v is None:
            raise UnknownDevice(f"device {device!r} is not enrolled at this centre")
        return v

    def accepted_entries(self, after_id: int = 0, limit: int = 1000, *, device: str | None = None) -> list[dict]:
        """Stored entries in arrival order (id), with ``body`` decoded from the signed bytes."""
        if device is None:
            rows = self.db.query("SELECT id, device, seq, kind, time, psn_no, req, raw, chain_checked FROM entries "
                                 "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        else:
            rows = self.db.query("SELECT id, device, seq, kind, time, psn_no, req, raw, chain_checked FROM entries "
                                 "WHERE id > ? AND device = ? ORDER BY id LIMIT ?", (after_id, device, limit))
        for r in rows:
            r["raw"] = bytes(r["raw"])
            r["body"] = cbor2.loads(r["raw"])["body"]
        return rows

    def entry_count(self, device: str | None = None) -> int:
        if device is None:
            return self.db.scalar("SELECT count(*) FROM entries")
        return self.db.scalar("SELECT count(*) FROM entries WHERE device = ?", (device,))

    def rejections(self, device: str | None = None) -> list[dict]:
        if device is None:
            return self.db.query("SELECT id, device, seq, code, message, slot, received_ms FROM rejections ORDER BY id")
        return self.db.query("SELECT id, device, seq, code, message, slot, received_ms FROM rejections "
                             "WHERE device = ? ORDER BY id", (device,))

    # -- bundles ---------------------------------------------------------------------------------
    def put_bundle(self, raw: bytes, *, now: int | None = None, offer: bool = True) -> dict:
        """Store a signed bundle (as built by :mod:`sync.bundles`); ``offer`` puts it on every device's
        downlink feed (a full bundle that follows its own delta is stored but not offered)."""
        now = now_ms() if now is None else now
        env = _bundles.envelope(raw)
        digest = hashlib.sha256(raw).hexdigest()
        info = {"kind": env["kind"], "version": env["version"], "base": env["base"], "hash": digest}
        with self.db.transaction():
            if self.db.query_one("SELECT id FROM bundles WHERE hash = ?", (digest,)):
                return info
            self.db.execute("INSERT INTO bundles (kind, version, base, hash, raw, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                            (env["kind"], env["version"], env["base"], digest, bytes(raw), now))
            if offer:
                self._post(None, "bundle", bytes(raw), topic=env["kind"], full=env["base"] is None, now=now)
            # A hotlist, catalogue or policy may change any pending claim's verdict: re-check them all.
            self.recon.mark_recheck_everyone(now)
        return info

    def bundle(self, kind: str, version: int, *, base: int | None = None) -> bytes | None:
        if base is None:
            row = self.db.query_one("SELECT raw FROM bundles WHERE kind = ? AND version = ? AND base IS NULL",
                                    (kind, version))
        else:
            row = self.db.query_one("SELECT raw FROM bundles WHERE kind = ? AND version = ? AND base = ?",
                                    (kind, version, base))
        return None if row is None else bytes(row["raw"])

    def bundle_by_hash(self, digest: str) -> bytes | None:
        row = self.db.query_one("SELECT raw FROM bundles WHERE hash = ?", (digest,))
        return None if row is None else bytes(row["raw"])

    def latest_bundle(self, kind: str, *, full: bool = True) -> dict | None:
        """Newest bundle of ``kind`` (full only by default): kind, version, base, hash, raw."""
        cond = "AND base IS NULL" if full else ""
        row = self.db.query_one(f"SELECT kind, version, base, hash, raw FROM bundles WHERE kind = ? {cond} "
                                "ORDER BY version DESC, id DESC LIMIT 1", (kind,))
        if row is not None:
            row["raw"] = bytes(row["raw"])
        return row

    def bundles_of(self, kind: str) -> list[dict]:
        """Every stored bundle of ``kind`` in version order: raw, created_ms."""
        rows = self.db.query("SELECT raw, created_ms FROM bundles WHERE kind = ? ORDER BY version, id", (kind,))
        for r in rows:
            r["raw"] = bytes(r["raw"])
        return rows

    def bundle_versions(self) -> dict[str, int]:
        return {r["kind"]: r["v"] for r in self.db.query("SELECT kind, max(version) AS v FROM bundles GROUP BY kind")}

    # -- downlink feed -----------------------------------------------------------------------------
    def post_downlink(self, device: str | None, kind: str, payload: Any, *, now: int | None = None) -> int:
        """Queue a message for ``device`` (None = every device). ``payload`` is any CBOR value."""
        if kind not in ("bundle", "outcome", "reimbursement"):
            raise StoreConflict(f"unknown downlink kind {kind!r}: use bundle, outcome or reimbursement")
        return self._post(device, kind, payload, now=now)

    def post_downlinks(self, messages: list[tuple[str | None, str, Any]], *, now: int | None = None) -> None:
        """Queue many (device, kind, payload) messages in one statement, in list order (the reconciler's
        batch); published like :meth:`post_downlink`'s."""
        for _, kind, _ in messages:
            if kind not in ("bundle", "outcome", "reimbursement"):
                raise StoreConflict(f"unknown downlink kind {kind!r}: use bundle, outcome or reimbursement")
        now = now_ms() if now is None else now
        self.db.executemany("INSERT INTO feed (device, kind, payload, created_ms) VALUES (?, ?, ?, ?)",
                            [(device, kind, cbor2.dumps(payload), now) for device, kind, payload in messages])
        if not self.db.in_transaction:
            self.publish_feed()

    def _post(self, device, kind, payload, *, topic: str | None = None, full: bool = False,
              now: int | None = None) -> int:
        """Write the message unpublished (no position); outside a caller's transaction it is published
        at once, inside one it is published after that transaction commits (:meth:`publish_feed`)."""
        now = now_ms() if now is None else now
        row = self.db.query_one("INSERT INTO feed (device, kind, topic, full_bundle, payload, created_ms) "
                                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                (device, kind, topic, 1 if full else 0, cbor2.dumps(payload), now))
        assert row is not None  # RETURNING gives the inserted row
        if not self.db.in_transaction:
            self.publish_feed()
            pos = self.db.scalar("SELECT pos FROM feed WHERE id = ?", (row["id"],))
            return pos if pos is not None else row["id"]
        return row["id"]

    def publish_feed(self, *, wait: bool = True) -> int:
        """Give committed, unpublished feed rows their positions, in one transaction under the
        feed_clock row's lock: positions grow in publication order, and every row a reader can see
        with a position was committed before any higher position was given. ``wait=False`` (the
        poll path): when another worker is publishing, return at once (it publishes ours too).
        Returns the number of rows published."""
        if self.db.in_transaction:
            return 0  # our own rows are not committed yet; the caller publishes after its commit
        if self.db.query_one("SELECT id FROM feed WHERE pos IS NULL LIMIT 1") is None:
            return 0  # the usual poll: nothing to publish, no write transaction
        with self.db.transaction():
            lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
            last = self.db.scalar({"sqlite": "SELECT last FROM feed_clock WHERE name = 'feed'",
                                   "postgres": f"SELECT last FROM feed_clock WHERE name = 'feed' {lock}"})
            if last is None:
                return 0
            ids = [r["id"] for r in self.db.query("SELECT id FROM feed WHERE pos IS NULL ORDER BY id")]
            if not ids:
                return 0
            # Never below the row's own id: a restore lifts the id sequence above every cursor a device
            # may hold (store/restore.py), and this lifts the positions with it.
            base = max(last, ids[0] - 1)
            if self.db.backend == "postgres":   # one statement for the lot
                self.db.execute("UPDATE feed f SET pos = u.pos FROM unnest(?::bigint[], ?::bigint[]) AS u(id, pos) "
                                "WHERE f.id = u.id", (ids, list(range(base + 1, base + len(ids) + 1))))
            else:
                self.db.executemany("UPDATE feed SET pos = ? WHERE id = ?", [(base + i + 1, fid) for i, fid in
                                                                             enumerate(ids)])
            self.db.execute("UPDATE feed_clock SET last = ? WHERE name = 'feed'", (base + len(ids),))
            return len(ids)

    def downlink_since(self, device: str, cursor: int, limit: int = 100, max_bytes: int = 4_000_000) -> list[dict]:
        """Messages for ``device`` after ``cursor``: [{"kind", "id", "payload"}], oldest first."""
        return self.downlink_page(device, cursor, limit, max_bytes)[0]

    def downlink_page(self, device: str, cursor: int, limit: int = 100,
                      max_bytes: int = 4_000_000) -> tuple[list[dict], int]:
        """Like :meth:`downlink_since`, plus the cursor to ask from next time.

        A device starting from cursor 0 gets, per bundle kind, only the newest full bundle and what
        follows it (older bundles are superseded), so the next cursor may skip rows."""
        floor: dict[str, int] = {}
        if cursor == 0:
            for r in self.db.query("SELECT topic, max(pos) AS id FROM feed WHERE kind = 'bundle' AND full_bundle = 1 "
                                   "AND pos IS NOT NULL GROUP BY topic"):
                floor[r["topic"]] = r["id"]
        # Sizes first, payloads only for the rows that fit: a 100k-item catalogue bundle is ~11 MB.
        self.publish_feed(wait=False)
        # The cursor is a position (commit order), not an id: a row committed late gets a higher position.
        rows = self.db.query("SELECT pos AS id, kind, topic, length(payload) AS size FROM feed WHERE pos > ? AND "
                             "(device = ? OR device IS NULL) ORDER BY pos LIMIT ?", (cursor, device, limit))
        chosen: list[dict] = []
        size, next_cursor = 0, cursor
        for r in rows:
            if r["kind"] == "bundle" and r["id"] < floor.get(r["topic"], 0):
                next_cursor = r["id"]
                continue
            if chosen and size + r["size"] > max_bytes:
                break
            size += r["size"]
            chosen.append(r)
            next_cursor = r["id"]
        out = []
        for r in chosen:
            payload = self.db.scalar("SELECT payload FROM feed WHERE pos = ?", (r["id"],))
            out.append({"kind": r["kind"], "id": r["id"], "payload": cbor2.loads(bytes(payload))})
        return out, next_cursor

    def feed_head(self) -> int:
        return self.db.scalar("SELECT coalesce(max(pos), 0) FROM feed")


def _text(v) -> str | None:
    return v if isinstance(v, str) else None


def open_store(url_or_path) -> Store:
    return Store.open(url_or_path)
