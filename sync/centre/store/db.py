"""One small database layer for the centre: SQLite (embedded default) or PostgreSQL (production).

``open_db(url_or_path)``:
    ``/path/centre.db``, ``sqlite:///path/centre.db`` or ``:memory:``  -> SQLite (WAL, synchronous=FULL)
    ``postgresql://user@host:5432/db`` (or ``postgres://``)         -> PostgreSQL through psycopg 3

Everything is synchronous and blocking; async callers use ``trio.to_thread.run_sync``. One
connection per Database, guarded by a re-entrant lock, so any worker thread may use it; a
``transaction()`` holds the lock for its whole body (callers keep transactions short).

One SQL dialect
---------------
Write SQL once, with ``?`` placeholders; for PostgreSQL ``?`` becomes ``%s`` (and a literal ``%``
becomes ``%%``). Never put a ``?`` inside a string literal. Portable types:

    BIGINT / INTEGER     whole numbers (fen, seq, ms timestamps: always BIGINT for those)
    TEXT                 text
    BLOB                 bytes; written BLOB, becomes BYTEA on PostgreSQL
    BOOLEAN              stored as 0/1 on SQLite; pass and compare ints (0/1) to stay portable
    SERIAL_PK            "INTEGER PRIMARY KEY AUTOINCREMENT" on SQLite (ids never reused, which
                         feed cursors rely on), "BIGSERIAL PRIMARY KEY" on PostgreSQL

``INSERT ... ON CONFLICT DO NOTHING`` and ``RETURNING`` work on both (SQLite >= 3.35). A statement that
must differ may be given as ``{"sqlite": "...", "postgres": "..."}`` in ``execute``/``migrate``.

Transactions: ``with db.transaction():`` commits on success and rolls back on error; nested use is
a savepoint. ``execute``/``query`` outside a transaction run in their own short transaction.
SQLite opens with ``BEGIN IMMEDIATE`` so two writers never deadlock on lock upgrade.

Migrations: ``db.migrate(name, statements)`` applies the statements once, in one transaction, and
records ``name`` in ``schema_migrations``; calling it again is a no-op. On PostgreSQL it holds a
transaction-scoped advisory lock, so concurrent starters apply each migration once. The centre's own
list is :mod:`.schema`.

Errors: sqlite3 / psycopg exceptions are mapped to :class:`sync.errors.StoreError` (retryable) and
:class:`sync.errors.StoreConflict` (integrity) with the driver's message.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sync.errors import StoreConflict, StoreError

SQL = str | Mapping[str, str]

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ms BIGINT NOT NULL)")


def _now_ms() -> int:
    import time
    return int(time.time() * 1000)


class Database:
    """Base class: the dialect-independent parts. Use :func:`open_db`."""

    backend = "abstract"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None   # the thread inside a transaction (it holds the lock)
        self._closed = False

    # -- dialect ---------------------------------------------------------------------------------
    def sql(self, statement: SQL) -> str:
        if isinstance(statement, Mapping):
            statement = statement[self.backend]
        return self._translate(statement)

    def _translate(self, statement: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- driver hooks ----------------------------------------------------------------------------
    def _begin(self) -> None: ...
    def _commit(self) -> None: ...
    def _rollback(self) -> None: ...
    def _cursor(self): ...
    def _map(self, exc: BaseException) -> Exception:  # pragma: no cover - overridden
        raise NotImplementedError

    def _driver_errors(self) -> tuple[type[Exception], ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator["Database"]:
        """Commit on success, roll back on error; nested calls are savepoints."""
        with self._lock:
            if self._closed:
                raise StoreError("the database is closed")
            depth = self._depth
            try:
                if depth == 0:
                    self._begin()
                else:
                    self._raw(f"SAVEPOINT sp{depth}")
            except self._driver_errors() as exc:
                raise self._map(exc) from exc
            self._depth += 1
            self._owner = threading.get_ident()
            try:
                yield self
            except BaseException as exc:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                try:
                    if depth == 0:
                        self._rollback()
                    else:
                        self._raw(f"ROLLBACK TO SAVEPOINT sp{depth}")
                        self._raw(f"RELEASE SAVEPOINT sp{depth}")
                except self._driver_errors():
                    pass  # the original error is the one worth reporting
                if isinstance(exc, self._driver_errors()):
                    raise self._map(exc) from exc
                raise
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                try:
                    if depth == 0:
                        self._commit()
                    else:
                        self._raw(f"RELEASE SAVEPOINT sp{depth}")
                except self._driver_errors() as exc:
                    if depth == 0:
                        with contextlib.suppress(*self._driver_errors()):
                            self._rollback()
                    raise self._map(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _raw(self, statement: str) -> None:
        cur = self._cursor()
        cur.execute(statement)
        cur.close()

    def execute(self, statement: SQL, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self.transaction():
            try:
                cur = self._cursor()
                cur.execute(self.sql(statement), tuple(params))
                n = cur.rowcount
                cur.close()
                return n
            except self._driver_errors() as exc:
                raise self._map(exc) from exc

    def executemany(self, statement: SQL, rows: Iterable[Sequence[Any]]) -> int:
        rows = [tuple(r) for r in rows]
        if not rows:
            return 0
        with self.transaction():
            try:
                cur = self._cursor()
                cur.executemany(self.sql(statement), rows)
                n = cur.rowcount
                cur.close()
                return n
            except self._driver_errors() as exc:
                raise self._map(exc) from exc

    def query(self, statement: SQL, params: Sequence[Any] = ()) -> list[dict]:
        # Inside a caller's transaction a read needs no savepoint of its own (SAVEPOINT + RELEASE were
        # two extra round trips per read: most of the reconciler's time on PostgreSQL).
        with contextlib.nullcontext(self) if self._owner == threading.get_ident() else self.transaction():
            try:
                cur = self._cursor()
                cur.execute(self.sql(statement), tuple(params))
                names = [d[0] for d in cur.description or ()]
                rows = [dict(zip(names, _plain(r))) for r in cur.fetchall()]
                cur.close()
                return rows
            except self._driver_errors() as exc:
                raise self._map(exc) from exc

    def query_one(self, statement: SQL, params: Sequence[Any] = ()) -> dict | None:
        rows = self.query(statement, params)
        return rows[0] if rows else None

    def scalar(self, statement: SQL, params: Sequence[Any] = ()) -> Any:
        row = self.query_one(statement, params)
        return None if row is None else next(iter(row.values()))

    def migrate(self, name: str, statements: Sequence[SQL]) -> bool:
        """Apply ``statements`` once under ``name``; returns True if they ran now."""
        with self.transaction():
            self._migration_lock()
            self.execute(_MIGRATIONS_TABLE)
            if self.query_one("SELECT name FROM schema_migrations WHERE name = ?", (name,)):
                return False
            for st in statements:
                self.execute(st)
            self.execute("INSERT INTO schema_migrations (name, applied_ms) VALUES (?, ?)", (name, _now_ms()))
            return True

    def _migration_lock(self) -> None:
        """Held until the migration's transaction ends; SQLite's BEGIN IMMEDIATE serialises already."""

    def try_lock(self, key: int) -> bool:
        """Take a transaction-scoped lock named ``key`` if free (an election among workers); never waits.
        SQLite: always True (BEGIN IMMEDIATE already makes the caller the only writer)."""
        return True

    def reopen(self) -> "Database":
        """A new connection to the same database (background work runs on its own connections)."""
        raise NotImplementedError

    def migrations(self) -> list[str]:
        # Under the migration lock: concurrent CREATE TABLE IF NOT EXISTS races on PostgreSQL's catalogue
        # (a unique violation), which killed workers started together on a fresh database.
        with self.transaction():
            self._migration_lock()
            self.execute(_MIGRATIONS_TABLE)
        return [r["name"] for r in self.query("SELECT name FROM schema_migrations ORDER BY applied_ms, name")]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def _close(self) -> None: ...

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(row) -> tuple:
    # psycopg returns memoryview for bytea in some modes; callers always get bytes.
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


class SQLiteDatabase(Database):
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (sqlite3's implicit
            # transactions would otherwise open and close them behind our back).
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path}: {exc}; check the path and its permissions") from exc

    def _translate(self, statement: str) -> str:
        return statement.replace("SERIAL_PK", "INTEGER PRIMARY KEY AUTOINCREMENT")

    def reopen(self) -> "Database":
        if self.path == ":memory:":
            return self  # a private in-memory database has no second connection
        return SQLiteDatabase(self.path)

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _cursor(self):
        return self._conn.cursor()

    def _driver_errors(self):
        return (sqlite3.Error,)

    def _map(self, exc: BaseException) -> Exception:
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreConflict(f"SQLite refused a write: {exc}")
        return StoreError(f"SQLite error on {self.path}: {exc}; check disk space and permissions, then retry")

    def _close(self) -> None:
        self._conn.close()


# Any fixed 64-bit number: the advisory lock is this application's, per database.
_PG_MIGRATION_LOCK = 0x63656E7472650001
_BLOB = re.compile(r"\bBLOB\b")


# Connections per pool (per process and per Database: the reconciler's sibling has its own pool).
POOL_SIZE = int(os.environ.get("CENTRE_PG_POOL", "8"))


class _ThreadState(threading.local):
    depth = 0
    owner: int | None = None
    conn: Any = None


class _NoLock:
    """The pool's stand-in for the base class's lock: each thread has its own connection and state."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg_pool connection pool: each thread's transaction takes a connection
    from the pool at BEGIN and gives it back at COMMIT/ROLLBACK (a statement outside a transaction is
    one short transaction), so worker threads serving requests run at once and never wait for each
    other's transactions; nested transactions are savepoints on the thread's connection."""

    backend = "postgres"

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self._state = _ThreadState()   # before the base class sets _depth/_owner through it
        super().__init__()
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._psycopg = psycopg
        self.url = url
        self.pool_size = max(1, pool_size or POOL_SIZE)
        self._lock = _NoLock()  # type: ignore[assignment]
        self._cache: dict[str, str] = {}
        # autocommit=True: we send BEGIN/COMMIT ourselves, exactly like the SQLite side.
        self._pool = ConnectionPool(url, min_size=1, max_size=self.pool_size, open=False, name="centre", num_workers=1,
                                    kwargs={"autocommit": True, "connect_timeout": 10}, timeout=30)
        try:
            self._pool.open(wait=True, timeout=15)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}; is the server running "
                             "and the URL right?") from exc

    # Per-thread transaction state (the base class keeps one for its single connection).
    @property  # type: ignore[override]
    def _depth(self) -> int:
        return self._state.depth

    @_depth.setter
    def _depth(self, value: int) -> None:
        self._state.depth = value

    @property  # type: ignore[override]
    def _owner(self) -> int | None:
        return self._state.owner

    @_owner.setter
    def _owner(self, value: int | None) -> None:
        self._state.owner = value

    @property
    def _conn(self):
        conn = self._state.conn
        if conn is None:
            raise StoreError("no PostgreSQL connection outside a transaction (a bug in the store layer)")
        return conn

    def connections(self) -> int:
        """Connections the pool holds now (open ones, in use or idle)."""
        return int(self._pool.get_stats().get("pool_size", 0))

    def _translate(self, statement: str) -> str:
        out = self._cache.get(statement)
        if out is None:
            out = statement.replace("%", "%%").replace("?", "%s").replace("SERIAL_PK", "BIGSERIAL PRIMARY KEY")
            out = _BLOB.sub("BYTEA", out)
            self._cache[statement] = out
        return out

    def _begin(self) -> None:
        # A server restart or a dropped connection leaves a pooled connection broken: the pool discards
        # it when it comes back (the request that met it failed, retryable StoreError); the next
        # transaction gets a working one.
        try:
            conn = self._pool.getconn()
        except Exception as exc:  # PoolTimeout, PoolClosed: no connection to be had
            raise StoreError(f"no PostgreSQL connection free at {_redact(self.url)} ({exc}); retry") from exc
        try:
            conn.execute("BEGIN")
        except BaseException:
            self._pool.putconn(conn)
            raise
        self._state.conn = conn

    def _release(self) -> None:
        conn, self._state.conn = self._state.conn, None
        if conn is not None:
            self._pool.putconn(conn)

    def _commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.broken or self._conn.closed:
                self._release()   # the base class's rollback is suppressed; nothing else would give it back
            raise
        self._release()

    def _rollback(self) -> None:
        try:
            if self._state.conn is not None and not (self._state.conn.broken or self._state.conn.closed):
                self._conn.execute("ROLLBACK")
        finally:
            self._release()

    def _raw(self, statement: str) -> None:
        self._conn.execute(statement)

    def _migration_lock(self) -> None:
        # Two centre processes starting together: the second waits here, then finds the migration recorded.
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))

    def try_lock(self, key: int) -> bool:
        return bool(self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0])

    def reopen(self) -> "Database":
        # Background work gets a small pool of its own: a handler never waits for a connection a
        # reconciliation batch holds, nor a batch for the handlers'.
        return PostgresDatabase(self.url, pool_size=2)

    def _cursor(self):
        return self._conn.cursor()

    def _driver_errors(self):
        return (self._psycopg.Error,)

    def _map(self, exc: BaseException) -> Exception:
        if isinstance(exc, self._psycopg.errors.IntegrityError):
            return StoreConflict(f"PostgreSQL refused a write: {exc}")
        return StoreError(f"PostgreSQL error at {_redact(self.url)}: {exc}; check the server, then retry")

    def _close(self) -> None:
        self._pool.close()


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_db(url_or_path: str | Path) -> Database:
    """Open SQLite (a path, ``sqlite:///path`` or ``:memory:``) or PostgreSQL (``postgresql://...``)."""
    s = str(url_or_path)
    if s.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(s)
    if s.startswith("sqlite:///"):
        s = s[len("sqlite:///"):]
        # sqlite:////abs/path keeps its leading slash; sqlite:///rel/path is relative.
    elif s.startswith("sqlite://"):
        raise StoreError(f"bad SQLite URL {s!r}: write sqlite:///relative/path or sqlite:////absolute/path")
    return SQLiteDatabase(s)
