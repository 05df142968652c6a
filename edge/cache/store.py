"""The edge cache: signed bundles from the centre, materialised in SQLite, plus per-card offline counters.

Connections: one writer connection, guarded by a lock, for everything that writes (bundle applies,
journal-derived state, notices, marks); and read-only connections, taken from a small pool, for every
read method (person lookups, item search, versions, policy, counters, notices). WAL lets those
readers go on during a write transaction: they see the last committed state, so a 100k-item bundle
apply never makes a person lookup wait. Every method blocks, so async callers use
``trio.to_thread.run_sync``. The schema is a list of named migrations (:func:`edge.storage.migrate`),
applied when opened; writes go through :func:`edge.storage.atomic`.

WAL with ``synchronous=NORMAL``: a power cut may lose the last commits but never corrupts the file, and
what it can lose is re-derivable. Bundles are fetched again (the version goes back with them), and the
per-card offline counters are rebuilt from the journal (which *is* fsynced on every append) because
``applied_seq`` goes back with them too (:meth:`Cache.catch_up` at start-up). So a counter can never go
backwards; it saves one fsync per visit. Bundles are the exception: the uplink's feed cursor moves past
a bundle once it is applied, so that commit is fsynced.

Bundles are verified with the pinned centre key (:func:`sync.bundles.open_bundle`) before anything is
written; a delta applies on the cached version only (upserts then deletes, the rules of
:func:`sync.bundles.apply_delta`), in one transaction with the new version.

Local effects of journaled visits (person state after a settlement, per-card offline counters) are
applied from journal entries by :meth:`Cache.apply_entry`, idempotently by ``seq``; at start-up
:meth:`Cache.catch_up` replays whatever the journal holds beyond the last applied ``seq``. If that
fails the counters are marked untrustworthy and offline settlement fails closed until it succeeds.

Entries journaled but not yet applied (the writer is busy with a bundle) are passed to the person and
counter reads as ``pending``: the read folds in those beyond the ``applied_seq`` it sees in the same
snapshot, so a card's next visit neither waits for the apply nor misses (or counts twice) the last one.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import cbor2

from edge.settle import CatalogueItem, PersonState, Policy, SettlementError, parse_catalogue, parse_person, parse_policy
from edge.settle.inputs import DEFAULT_ACCUMULATOR
from sync.bundles import KINDS, BundleError, BundleMalformed, open_bundle

from edge.storage import Migration, atomic, migrate, statements

from .errors import CacheError, CacheUnavailable
from .search import initials, normalise, terms, upper_bound

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (kind TEXT PRIMARY KEY, version INTEGER NOT NULL, hash TEXT NOT NULL,
    created INTEGER NOT NULL, applied_ms INTEGER NOT NULL, payload TEXT);
CREATE TABLE IF NOT EXISTS items (code TEXT PRIMARY KEY, name TEXT NOT NULL, py TEXT NOT NULL,
    data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_terms (term TEXT NOT NULL, code TEXT NOT NULL, PRIMARY KEY (term, code))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persons (psn_no TEXT PRIMARY KEY, certno TEXT, data TEXT NOT NULL,
    balc INTEGER NOT NULL, deductible_used INTEGER NOT NULL, fund_paid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS persons_certno ON persons (certno);
CREATE TABLE IF NOT EXISTS person_cards (card_id TEXT PRIMARY KEY, psn_no TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS person_cards_psn ON person_cards (psn_no);
CREATE TABLE IF NOT EXISTS hotlist (card_id TEXT PRIMARY KEY, reason TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offline_use (card_id TEXT PRIMARY KEY, visits INTEGER NOT NULL,
    acct_used INTEGER NOT NULL, fund_used INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (id TEXT PRIMARY KEY, psn_no TEXT, kind TEXT NOT NULL, payload TEXT NOT NULL,
    received_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS notices_psn ON notices (psn_no);
"""


def _migration_0001(conn: sqlite3.Connection) -> None:
    # IF NOT EXISTS throughout: a cache file created before migrations existed is adopted as it is.
    for sql in statements(SCHEMA):
        conn.execute(sql)


def _migration_0002(conn: sqlite3.Connection) -> None:
    # Local person state becomes the centre's snapshot + this device's entries the snapshot does not
    # reflect (``local_effects``), and offline counters count per person, not per card: the card rows
    # are summed into their person's row (a card of no known person keeps a card row).
    conn.execute("CREATE TABLE IF NOT EXISTS local_effects (seq INTEGER PRIMARY KEY, psn_no TEXT NOT NULL, "
                 "acct INTEGER NOT NULL, dedc INTEGER NOT NULL, fund INTEGER NOT NULL, year INTEGER, "
                 "accumulator TEXT)")
    conn.execute("CREATE INDEX IF NOT EXISTS local_effects_psn ON local_effects (psn_no, seq)")
    rows = conn.execute("SELECT u.card_id, pc.psn_no, u.visits, u.acct_used, u.fund_used FROM offline_use u "
                        "LEFT JOIN person_cards pc ON pc.card_id = u.card_id").fetchall()
    conn.execute("DELETE FROM offline_use")
    for card_id, psn_no, visits, acct, fund in rows:
        conn.execute("INSERT INTO offline_use (card_id, visits, acct_used, fund_used) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT(card_id) DO UPDATE SET visits = visits + excluded.visits, "
                     "acct_used = acct_used + excluded.acct_used, fund_used = fund_used + excluded.fund_used",
                     (_use_key(psn_no, None, card_id), visits, acct, fund))


MIGRATIONS: tuple[Migration, ...] = (("0001_initial", _migration_0001), ("0002_local_effects", _migration_0002))


@dataclass(frozen=True, slots=True)
class Person:
    """A person snapshot with the local state (after this device's own journaled visits)."""

    psn_no: str
    certno: str | None
    state: PersonState
    snapshot: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refresh:
    wall_ms: int
    mono_ns: int
    boot_id: str


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


class Cache:
    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self._policy: tuple[int, Policy | None] | None = None
        self._idle: list[sqlite3.Connection] = []   # read-only connections not in use (see _reader)
        self._readers_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> "Cache":
        where = str(path)
        try:
            if where != ":memory:":
                Path(where).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA cache_size=-8000")   # 8 MB page cache: RSS stays small with 100k items
                migrate(conn, MIGRATIONS)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"the cache {where} cannot be opened: {exc}") from exc
        return cls(conn, where)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
        with self._readers_lock:
            for reader in self._idle:
                reader.close()
            self._idle.clear()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with atomic(self._conn) as conn:
                    yield conn
            except sqlite3.Error as exc:
                raise CacheUnavailable(f"the cache {self.path} cannot be written: {exc}") from exc

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """Commit with fsync (bundles: rare, and the uplink's feed cursor moves on once they are applied)."""
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection from the pool, for one read (opened when none is idle).

        A pool rather than one per thread: trio's worker threads come and go, so per-thread
        connections would pile up over a long-running day. The pool holds at most as many
        connections as reads ever ran at once (trio's thread limiter bounds that).
        """
        with self._readers_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA cache_size=-2000")
        try:
            yield conn
        finally:
            with self._readers_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def _q(self, sql: str, args: Iterable = ()) -> list[tuple]:
        """A read on a read-only connection: never waits for the writer's lock or transaction."""
        if self.path == ":memory:":   # a private in-memory database has no second connection
            with self._lock:
                return self._read(self._conn, sql, args)
        try:
            with self._reader() as conn:
                return self._read(conn, sql, args)
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"the cache {self.path} cannot be read: {exc}") from exc

    def _q_snapshot(self, *queries: tuple[str, Iterable]) -> list[list[tuple]]:
        """Several reads in one read transaction: they all see the same committed state."""
        if self.path == ":memory:":
            with self._lock:
                return [self._read(self._conn, sql, args) for sql, args in queries]
        try:
            with self._reader() as conn:
                conn.execute("BEGIN")
                try:
                    return [self._read(conn, sql, args) for sql, args in queries]
                finally:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"the cache {self.path} cannot be read: {exc}") from exc

    def _read(self, conn: sqlite3.Connection, sql: str, args: Iterable) -> list[tuple]:
        try:
            return conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"the cache {self.path} cannot be read: {exc}") from exc

    # -- meta -----------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, str(value)))

    # -- bundles --------------------------------------------------------------------------------
    def apply_bundle(self, raw: bytes, verify_key, *, now_ms: int) -> dict:
        """Verify and apply one bundle; returns {"kind", "version", "base"}. Raises BundleError."""
        # The envelope names the kind; open_bundle then checks signature, kind and version chain.
        try:
            kind = cbor2.loads(cbor2.loads(raw)["signed"])["kind"]
        except Exception:
            raise BundleMalformed("not a bundle: the download is corrupt; fetch it again") from None
        if kind not in KINDS:
            shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."   # an envelope is untrusted
            raise BundleMalformed(f"unknown bundle kind {shown}: this agent may be too old; report it")
        cur = self.versions().get(kind, {}).get("version")
        bundle = open_bundle(raw, verify_key, current_version=cur)
        payload = bundle.payload
        try:
            with self._lock, self._durable(), self._tx() as c:
                # The version chain again, under the write lock: another writer (edge sync, a second
                # process) may have applied a newer bundle since the check above; never go backwards.
                row = c.execute("SELECT version FROM bundles WHERE kind = ?", (kind,)).fetchone()
                if (row[0] if row else None) != cur:
                    open_bundle(raw, verify_key, current_version=row[0] if row else None)
                if bundle.kind == "catalogue":
                    self._apply_catalogue(c, payload, bundle.is_delta)
                    stored = None
                elif bundle.kind == "policy":
                    parse_policy(payload)  # refuse a policy the engine cannot read, before storing it
                    stored = _json(payload)
                elif bundle.kind == "persons":
                    self._apply_persons(c, payload, bundle.is_delta)
                    stored = None
                else:
                    self._apply_hotlist(c, payload, bundle.is_delta)
                    stored = None
                c.execute("INSERT INTO bundles (kind, version, hash, created, applied_ms, payload) VALUES (?,?,?,?,?,?) "
                          "ON CONFLICT(kind) DO UPDATE SET version=excluded.version, hash=excluded.hash, "
                          "created=excluded.created, applied_ms=excluded.applied_ms, "
                          "payload=COALESCE(excluded.payload, bundles.payload)",
                          (bundle.kind, bundle.version, bundle.hash, bundle.created, now_ms, stored))
        except SettlementError as exc:
            raise BundleMalformed(f"{bundle.kind} bundle {bundle.version} has invalid content: {exc.message}") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleMalformed(f"{bundle.kind} bundle {bundle.version} has invalid content ({exc!r})") from exc
        if bundle.kind == "policy":
            self._policy = None
        return {"kind": bundle.kind, "version": bundle.version, "base": bundle.base}

    def apply_bundle_isolated(self, raw: bytes, verify_key, *, now_ms: int) -> dict:
        """:meth:`apply_bundle` in a child process at a lower CPU priority (:mod:`edge.cache.isolated`).

        The daemon's way: the counter's process keeps its interpreter and the CPU while a large bundle
        applies. This cache's writer lock is held meanwhile, so its own writers queue as they would
        behind an in-process apply. Same result, same errors.
        """
        if self.path == ":memory:" or verify_key is None:
            return self.apply_bundle(raw, verify_key, now_ms=now_ms)
        from .isolated import apply_in_child   # not at import time: the child runs that module as __main__

        with self._lock:
            if self._closed:
                raise CacheUnavailable(f"the cache {self.path} is closed")
            info = apply_in_child(self.path, raw, verify_key, now_ms=now_ms)
        self._policy = None
        return info

    def _apply_catalogue(self, c: sqlite3.Connection, payload: Mapping, delta: bool) -> None:
        if not delta:
            c.execute("DELETE FROM items")
            c.execute("DELETE FROM item_terms")
        upserts = payload.get("upsert" if delta else "items", [])
        parse_catalogue(list(upserts))  # the engine must be able to read every item we store
        for code in payload.get("delete", []) if delta else []:
            c.execute("DELETE FROM items WHERE code = ?", (code,))
            c.execute("DELETE FROM item_terms WHERE code = ?", (code,))
        rows: list[tuple[str, str, str, str]] = []
        term_rows: list[tuple[str, str]] = []
        for it in upserts:
            code, name = it["code"], it.get("name") or it["code"]
            py = normalise(it.get("py") or it.get("pinyin") or "") or initials(name)
            ts = terms(code, name, py)
            if delta:
                c.execute("DELETE FROM item_terms WHERE code = ?", (code,))
            rows.append((code, name, py, _json(it)))
            term_rows.extend((t, code) for t in ts)
        c.executemany("INSERT OR REPLACE INTO items (code, name, py, data) VALUES (?,?,?,?)", rows)
        term_rows.sort()   # in index order: B-tree appends instead of random page splits (100k items)
        c.executemany("INSERT OR IGNORE INTO item_terms (term, code) VALUES (?,?)", term_rows)

    def _apply_persons(self, c: sqlite3.Connection, payload: Mapping, delta: bool) -> None:
        if not delta:
            c.execute("DELETE FROM persons")
            c.execute("DELETE FROM person_cards")
        for psn in payload.get("delete", []) if delta else []:
            c.execute("DELETE FROM persons WHERE psn_no = ?", (psn,))
            c.execute("DELETE FROM person_cards WHERE psn_no = ?", (psn,))
        for p in payload.get("upsert" if delta else "persons", []):
            st = parse_person(p)
            c.execute("INSERT OR REPLACE INTO persons (psn_no, certno, data, balc, deductible_used, fund_paid) "
                      "VALUES (?,?,?,?,?,?)", (p["psn_no"], p.get("certno"), _json(p), st.balc, st.deductible_used,
                                               st.fund_paid))
            if delta:   # (a full bundle starts from empty tables)
                c.execute("DELETE FROM person_cards WHERE psn_no = ?", (p["psn_no"],))
            c.executemany("INSERT OR REPLACE INTO person_cards (card_id, psn_no) VALUES (?, ?)",
                          [(cid, p["psn_no"]) for cid in p.get("card_ids", []) or []])

    def _apply_hotlist(self, c: sqlite3.Connection, payload: Mapping, delta: bool) -> None:
        if not delta:
            c.execute("DELETE FROM hotlist")
        for cid in payload.get("delete", []) if delta else []:
            c.execute("DELETE FROM hotlist WHERE card_id = ?", (cid,))
        c.executemany("INSERT OR REPLACE INTO hotlist (card_id, reason) VALUES (?, ?)",
                      [(r["card_id"], str(r.get("reason", "blocked"))) for r in
                       payload.get("upsert" if delta else "cards", [])])

    def versions(self) -> dict[str, dict]:
        return {k: {"version": v, "hash": h, "created": cr, "applied_ms": ap}
                for k, v, h, cr, ap in self._q("SELECT kind, version, hash, created, applied_ms FROM bundles")}

    def policy(self) -> Policy | None:
        rows = self._q("SELECT version, payload FROM bundles WHERE kind = 'policy'")
        if not rows:
            return None
        version, payload = rows[0]
        if self._policy is None or self._policy[0] != version:
            self._policy = (version, parse_policy(json.loads(payload)))
        return self._policy[1]

    # -- catalogue ------------------------------------------------------------------------------
    def catalogue_for(self, codes: Iterable[str]) -> dict[str, CatalogueItem]:
        """The catalogue entries the engine needs for these codes (missing codes are simply absent)."""
        codes = sorted(set(codes))
        if not codes:
            return {}
        marks = ",".join("?" * len(codes))
        rows = self._q(f"SELECT data FROM items WHERE code IN ({marks})", codes)
        return parse_catalogue([json.loads(r[0]) for r in rows])

    def item(self, code: str) -> dict | None:
        rows = self._q("SELECT data, py FROM items WHERE code = ?", (code,))
        return {**json.loads(rows[0][0]), "py": rows[0][1]} if rows else None

    def search(self, query: str, limit: int = 20) -> list[dict]:
        """Items whose code or pinyin initials start with the query, or whose name contains it."""
        q = normalise(query)
        if not q:
            return []
        rows = self._q(
            "SELECT i.code, i.name, i.py, i.data FROM (SELECT DISTINCT code FROM item_terms WHERE term >= ? AND "
            "term < ? LIMIT ?) t JOIN items i ON i.code = t.code", (q, upper_bound(q), limit * 2))
        # Exact code, then code prefix, then shorter names (the plain product before its variants);
        # only the rows shown are parsed.
        rows.sort(key=lambda r: (normalise(r[0]) != q, not normalise(r[0]).startswith(q), len(r[1]), r[0]))
        return [{**json.loads(data), "py": py} for _, _, py, data in rows[:limit]]

    def item_count(self) -> int:
        return self._q("SELECT count(*) FROM items")[0][0]

    # -- persons and hotlist --------------------------------------------------------------------
    def _person(self, row: tuple | None, pending: Iterable = ()) -> Person | None:
        """The centre's snapshot plus this device's entries it does not reflect (its ``reflects_seq``),
        recorded or ``pending`` (journaled, not yet applied: see the module docstring)."""
        if row is None:
            return None
        psn_no, certno, data, balc, dedc, fund = row
        snap = json.loads(data)
        st = parse_person({**snap, "balc": balc, "deductible_used": dedc, "fund_paid": fund})
        device = self._meta("device")
        reflects = snap.get("reflects_seq") if isinstance(snap.get("reflects_seq"), Mapping) else {}
        seen = reflects.get(device, 0) if device is not None else 0
        seen = seen if isinstance(seen, int) and not isinstance(seen, bool) else 0
        mine = [e for e in pending if e.body.get("psn_no") == psn_no and e.seq > seen]
        query = ("SELECT acct, dedc, fund, year, accumulator, seq FROM local_effects WHERE psn_no = ? AND seq > ? "
                 "ORDER BY seq", (psn_no, seen))
        if mine:
            effects, applied = self._q_snapshot(query, ("SELECT value FROM meta WHERE key = 'applied_seq'", ()))
            done = int(applied[0][0]) if applied else 0
        else:
            effects, done = self._q(*query), 0
        recorded = {row[5]: row[:5] for row in effects}
        overlay = [row[:5] for row in effects]
        for e in mine:
            if e.seq <= done:
                continue       # applied already: the snapshot above holds it
            eff = self._effect_of(e.kind, e.body, recorded)
            if eff is not None:
                recorded[e.seq] = eff
                overlay.append(eff)
        if overlay:
            policy = self.policy()
            default = policy.default_accumulator if policy is not None else DEFAULT_ACCUMULATOR
            for acct, d, f, year, acc in overlay:
                if year is None:
                    st = st.with_state(balc=st.balc - acct, deductible_used=max(0, st.deductible_used + d),
                                       fund_paid=max(0, st.fund_paid + f))
                else:
                    used, paid = st.totals(year, acc or default, default)
                    st = st.with_totals(balc=st.balc - acct, year=year, accumulator=acc or default,
                                        used=max(0, used + d), paid=max(0, paid + f), default=default)
        return Person(psn_no, certno, st, snap)

    def _effect_of(self, kind: str, body: Mapping, recorded: Mapping[int, tuple]) -> tuple | None:
        """A journaled entry's effect on its person (acct, dedc, fund, year, accumulator), or None."""
        if not body.get("psn_no"):
            return None
        if kind == "settlement":
            return _settlement_effect(body, self._accumulator_of(body))
        if kind == "cancel":
            orig = recorded.get(body.get("cancels"))  # type: ignore[arg-type]
            if orig is None:
                rows = self._q("SELECT acct, dedc, fund, year, accumulator FROM local_effects WHERE seq = ?",
                               (body.get("cancels"),))
                orig = rows[0] if rows else None
            return _cancel_effect(orig, body)
        return None

    def person(self, psn_no: str, pending: Iterable = ()) -> Person | None:
        rows = self._q("SELECT psn_no, certno, data, balc, deductible_used, fund_paid FROM persons WHERE psn_no = ?",
                       (psn_no,))
        return self._person(rows[0] if rows else None, pending)

    def person_for_card(self, card_id: str | None, certno: str | None, pending: Iterable = ()) -> Person | None:
        """The snapshot for a card (by card identification code, then by social security number)."""
        if card_id:
            rows = self._q("SELECT psn_no FROM person_cards WHERE card_id = ?", (card_id,))
            if rows:
                return self.person(rows[0][0], pending)
        if certno:
            rows = self._q("SELECT psn_no, certno, data, balc, deductible_used, fund_paid FROM persons "
                           "WHERE certno = ? LIMIT 1", (certno,))
            return self._person(rows[0] if rows else None, pending)
        return None

    def hotlisted(self, card_id: str | None) -> str | None:
        if not card_id:
            return None
        rows = self._q("SELECT reason FROM hotlist WHERE card_id = ?", (card_id,))
        return rows[0][0] if rows else None

    def person_count(self) -> int:
        return self._q("SELECT count(*) FROM persons")[0][0]

    # -- refresh time (cache age) ---------------------------------------------------------------
    def mark_refreshed(self, *, wall_ms: int, mono_ns: int, boot_id: str) -> None:
        with self._tx() as c:
            self._set_meta(c, "refreshed", _json({"wall_ms": wall_ms, "mono_ns": mono_ns, "boot_id": boot_id}))

    def refreshed(self) -> Refresh | None:
        raw = self._meta("refreshed")
        if raw is None:
            return None
        d = json.loads(raw)
        return Refresh(int(d["wall_ms"]), int(d["mono_ns"]), str(d["boot_id"]))

    # -- the centre's clock, last seen (edge.counter.clock: the time floor survives a restart) --------
    def save_centre_seen(self, seen: Mapping[str, Any]) -> None:
        """Keep the last centre time seen (``edge.counter.clock.CentreSeen.to_dict()``)."""
        with self._tx() as c:
            self._set_meta(c, "centre_seen", _json(dict(seen)))

    def centre_seen(self) -> dict | None:
        raw = self._meta("centre_seen")
        try:
            d = json.loads(raw) if raw is not None else None
        except ValueError:
            return None          # damaged: as if never seen (the journal and bundles still give a floor)
        return d if isinstance(d, dict) else None

    # -- journal-derived local state ------------------------------------------------------------
    def applied_seq(self) -> int:
        v = self._meta("applied_seq")
        return int(v) if v is not None else 0

    def counters_trusted(self) -> bool:
        return self._meta("counters_dirty") in (None, "0")

    def mark_counters_dirty(self) -> None:
        with self._tx() as c:
            self._set_meta(c, "counters_dirty", 1)

    def offline_use(self, card_id: str, certno: str | None = None, pending: Iterable = ()) -> tuple[int, int] | None:
        """(visits, account fen) used offline by this card's person since their last online settlement.

        Counted per person (DOMAIN.md 6): every card of the person, found by card or by ID number
        (an old card, a new one, another region's card with the same certno), plus ``pending`` entries
        beyond the applied seq seen in the same snapshot. None = unknown."""
        if not self.counters_trusted():
            return None
        person = self.person_for_card(card_id, certno)
        key = _use_key(person.psn_no if person else None, certno, card_id)
        rows, applied = self._q_snapshot(("SELECT visits, acct_used FROM offline_use WHERE card_id = ?", (key,)),
                                         ("SELECT value FROM meta WHERE key = 'applied_seq'", ()))
        visits, acct = (rows[0][0], rows[0][1]) if rows else (0, 0)
        done = int(applied[0][0]) if applied else 0
        for e in pending:
            if e.kind != "settlement" or e.seq <= done or _use_key_of(e.body) != key:
                continue
            if e.body.get("mode") == "online":
                visits, acct = 0, 0
            else:
                visits, acct = visits + 1, acct + int(e.body["amounts"]["acct_pay"])
        return visits, acct

    def apply_entry(self, entry) -> bool:
        """Apply a journaled visit's local effects once (by seq). Returns False if already applied."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'applied_seq'").fetchone()
            done = int(row[0]) if row else 0
            if entry.seq <= done:
                return False
            body = entry.body
            device = getattr(entry, "device", None)
            if isinstance(device, str) and device:
                self._set_meta(c, "device", device)
            if entry.kind == "settlement":
                self._apply_settlement(c, entry.seq, body, self._accumulator_of(body))
            elif entry.kind == "cancel":
                self._apply_cancel(c, entry.seq, body)
            self._set_meta(c, "applied_seq", entry.seq)
        return True

    def _accumulator_of(self, body: Mapping) -> tuple[int | None, str | None]:
        """The policy year and accumulator a journaled settlement drew on (from the cached policy)."""
        visit, person = body.get("visit") or {}, body.get("person") or {}
        try:
            day = _dt.date.fromisoformat(str(visit.get("date")))
        except ValueError:
            return None, None
        policy = self.policy()
        rule = None if policy is None else policy.rule_for(
            str(person.get("insutype")), str(person.get("psn_type")), str(visit.get("med_type")),
            str(visit.get("level")), day)
        return day.year, (rule.accumulator if rule is not None else None)

    @staticmethod
    def _apply_settlement(c: sqlite3.Connection, seq: int, body: Mapping, where: tuple[int | None, str | None]) -> None:
        # The effect is recorded, not folded into the snapshot: a later bundle that does not reflect
        # this seq keeps it (a bundle never erases usage the centre has not seen).
        a = body["amounts"]
        psn = body.get("psn_no")
        if psn:
            c.execute("INSERT OR REPLACE INTO local_effects (seq, psn_no, acct, dedc, fund, year, accumulator) "
                      "VALUES (?,?,?,?,?,?,?)", (seq, psn, *_settlement_effect(body, where)))
        key = _use_key_of(body)
        if key is None:
            return
        if body.get("mode") == "online":
            c.execute("DELETE FROM offline_use WHERE card_id = ?", (key,))
        else:
            c.execute("INSERT INTO offline_use (card_id, visits, acct_used, fund_used) VALUES (?, 1, ?, ?) "
                      "ON CONFLICT(card_id) DO UPDATE SET visits = visits + 1, acct_used = acct_used + excluded.acct_used, "
                      "fund_used = fund_used + excluded.fund_used", (key, a["acct_pay"], a["hifp_pay"]))

    @staticmethod
    def _apply_cancel(c: sqlite3.Connection, seq: int, body: Mapping) -> None:
        psn = body.get("psn_no")
        if not psn:
            return
        orig = c.execute("SELECT acct, dedc, fund, year, accumulator FROM local_effects WHERE seq = ?",
                         (body.get("cancels"),)).fetchone()
        c.execute("INSERT OR REPLACE INTO local_effects (seq, psn_no, acct, dedc, fund, year, accumulator) "
                  "VALUES (?,?,?,?,?,?,?)", (seq, psn, *_cancel_effect(orig, body)))

    def catch_up(self, entries: Iterable) -> int:
        """Apply journal entries beyond ``applied_seq`` (given in seq order); clears the dirty mark."""
        n = 0
        for e in entries:
            n += self.apply_entry(e)
        with self._tx() as c:
            self._set_meta(c, "counters_dirty", 0)
        return n

    # -- notices from the centre (outcomes, reimbursements) -------------------------------------
    def add_notice(self, notice_id: str, kind: str, payload: Mapping, *, psn_no: str | None, now_ms: int) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO notices (id, psn_no, kind, payload, received_ms) VALUES (?,?,?,?,?)",
                      (notice_id, psn_no, kind, _json(payload), now_ms))

    def notices_for(self, psn_no: str) -> list[dict]:
        return [{"id": i, "kind": k, "payload": json.loads(p), "received_ms": r}
                for i, k, p, r in self._q("SELECT id, kind, payload, received_ms FROM notices WHERE psn_no = ? "
                                          "ORDER BY received_ms", (psn_no,))]


def _settlement_effect(body: Mapping, where: tuple[int | None, str | None]) -> tuple:
    """A settlement's effect on its person: (acct, dedc, fund, year, accumulator)."""
    a = body["amounts"]
    return (a["acct_pay"], a["act_pay_dedc"], a["hifp_pay"], *where)


def _cancel_effect(orig: tuple | None, body: Mapping) -> tuple:
    """A cancel undoes the effect of the settlement it names (its recorded effect, else its amounts)."""
    if orig is None:
        a = body.get("amounts") or {}
        orig = (abs(int(a.get("acct_pay", 0))), abs(int(a.get("act_pay_dedc", 0))),
                abs(int(a.get("hifp_pay", 0))), None, None)
    acct, dedc, fund, year, acc = orig
    return (-acct, -dedc, -fund, year, acc)


def _use_key_of(body: Mapping) -> str | None:
    return _use_key(body.get("psn_no"), body.get("certno"), (body.get("card") or {}).get("card_id"))


def _use_key(psn_no: str | None, certno: str | None, card_id: str | None) -> str | None:
    """Offline counters count per person: psn_no, else the ID number, else (unknown person) the card."""
    if psn_no:
        return f"psn:{psn_no}"
    if certno:
        return f"certno:{certno}"
    return f"card:{card_id}" if card_id else None


__all__ = ["Cache", "Person", "Refresh", "CacheError", "CacheUnavailable", "BundleError"]
