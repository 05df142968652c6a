"""``centre backup`` / ``centre restore``: one verifiable file holding the whole centre database.

File format (version 1)::

    SETTLE-CENTRE-BACKUP 1\\n
    {manifest as one line of JSON}\\n
    payload bytes

The manifest says ``backend`` (sqlite | postgres), ``migrations`` (names applied in the copy),
``created_ms``, ``epoch`` (the restore epoch the copy was in), ``payload_bytes`` and
``payload_sha256``. The payload is a self-contained SQLite file (online backup API: consistent while
the centre runs, WAL content included, journal mode DELETE so no -wal belongs to it) or a
``pg_dump -Fc`` archive. :func:`restore` refuses anything it cannot verify (magic, manifest, size,
hash, backend, migrations this code does not know) before touching the database.

Restore, with the centre stopped (refused while another connection holds the database):

* SQLite: the payload goes to a temporary file beside the database, is integrity-checked and fsynced,
  stale ``-wal``/``-shm`` files are removed (a WAL left beside an older main file corrupts it), and
  the file is renamed over the database.
* PostgreSQL: schema ``public`` is emptied and ``pg_restore --single-transaction`` fills it.

Then the store is opened (pending migrations applied) and the restore made visible
(:meth:`sync.centre.store.restore.Restores.begin`): a new restore epoch, unspent enrolment tokens
voided, feed ids lifted above the restore time, and every bundle kind re-signed as a new full version
numbered at least the restore time in ms: versions issued after the backup (lost with it) were all
smaller, so no version is ever reused with other content, and a counter holding a lost version takes
the re-signed one as newer (docs/sync.md, "Restored centre").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sync import bundles
from sync.centre.errors import BackupError

MAGIC = b"SETTLE-CENTRE-BACKUP 1\n"
MAX_MANIFEST = 64 * 1024
CHUNK = 1 << 20


def _now_ms() -> int:
    return int(time.time() * 1000)


def backend_of(url: str) -> str:
    return "postgres" if str(url).startswith(("postgresql://", "postgres://")) else "sqlite"


def sqlite_path(url: str) -> Path:
    s = str(url)
    if s.startswith("sqlite:///"):
        s = s[len("sqlite:///"):]
    return Path(s)


@dataclass(frozen=True)
class Manifest:
    backend: str
    migrations: list[str]
    created_ms: int
    epoch: str
    payload_bytes: int
    payload_sha256: str

    def to_json(self) -> bytes:
        return json.dumps({"format": 1, "backend": self.backend, "migrations": self.migrations,
                           "created_ms": self.created_ms, "epoch": self.epoch, "payload_bytes": self.payload_bytes,
                           "payload_sha256": self.payload_sha256}, separators=(",", ":")).encode() + b"\n"


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path, offset: int = 0) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _write(out: Path, manifest: Manifest, payload: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f, open(payload, "rb") as p:
        f.write(MAGIC)
        f.write(manifest.to_json())
        shutil.copyfileobj(p, f, CHUNK)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    _fsync_dir(out.parent)


def _pg_tool(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{args[0]} is not installed: install the PostgreSQL client tools of the server's "
                          "major version") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({args[0]} exit {done.returncode}): {done.stderr.strip()[:500]}")


def backup(url: str, out: str | os.PathLike, *, now_ms: int | None = None) -> Manifest:
    """Write a verifiable backup of the centre store at ``url`` to ``out``; safe while the centre runs."""
    from sync.centre.store import open_store
    from sync.centre.store.restore import sqlite_copy

    out = Path(out)
    backend = backend_of(url)
    store = open_store(url)
    try:
        migrations = store.db.migrations()
        epoch = store.restores.epoch().id
    finally:
        store.close()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".centre-backup-") as work:
        payload = Path(work) / "payload"
        if backend == "sqlite":
            sqlite_copy(sqlite_path(url), payload)
        else:
            _pg_tool(["pg_dump", "--format=custom", "--no-owner", "--no-acl", "--file", str(payload),
                      "--dbname", str(url)], "pg_dump")
        digest, size = _sha256(payload)
        manifest = Manifest(backend, migrations, _now_ms() if now_ms is None else now_ms, epoch, size, digest)
        _write(out, manifest, payload)
    return manifest


def read_manifest(path: str | os.PathLike) -> tuple[Manifest, int]:
    """The verified manifest of a backup file and the payload's offset; BackupError if it cannot be trusted."""
    from sync.centre.store.schema import MIGRATIONS

    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
            line = f.readline(MAX_MANIFEST)
    except OSError as exc:
        raise BackupError(f"cannot read the backup file {path}: {exc.strerror}") from None
    if magic != MAGIC:
        raise BackupError(f"{path} is not a centre backup (no SETTLE-CENTRE-BACKUP header): nothing was restored")
    try:
        m = json.loads(line)
        manifest = Manifest(str(m["backend"]), [str(x) for x in m["migrations"]], int(m["created_ms"]),
                            str(m["epoch"]), int(m["payload_bytes"]), str(m["payload_sha256"]))
        if m.get("format") != 1 or not line.endswith(b"\n"):
            raise ValueError("format")
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"the manifest of {path} is damaged: nothing was restored") from None
    offset = len(MAGIC) + len(line)
    digest, size = _sha256(path, offset)
    if size != manifest.payload_bytes:
        raise BackupError(f"{path} is truncated or padded: the payload has {size} bytes, the manifest says "
                          f"{manifest.payload_bytes}; nothing was restored")
    if digest != manifest.payload_sha256:
        raise BackupError(f"{path} is corrupt: the payload's SHA-256 does not match its manifest; nothing was "
                          "restored (use another backup)")
    known = {m.name for m in MIGRATIONS}
    unknown = [n for n in manifest.migrations if n not in known]
    if unknown:
        raise BackupError(f"{path} was written by a newer centre (migrations {', '.join(unknown)} unknown here): "
                          "restore it with that version")
    return manifest, offset


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    epoch: str
    republished: dict[str, int]      # kind -> the new version


def restore(url: str, path: str | os.PathLike, *, data_dir: str | os.PathLike,
            now_ms: int | None = None) -> Restored:
    """Put the backup ``path`` back into the store at ``url`` (the centre stopped) and start a new epoch.
    ``data_dir`` holds the bundle-signing key (it must be the key counters pinned)."""
    from sync.centre.keys import KEY_FILE, load_or_create
    from sync.centre.store import open_store
    from sync.centre.store.db import open_db
    from sync.centre.store.restore import clear_schema, other_sessions, sqlite_check, sqlite_in_use

    path = Path(path)
    manifest, offset = read_manifest(path)
    backend = backend_of(url)
    if manifest.backend != backend:
        raise BackupError(f"{path} is a {manifest.backend} backup and the target store is {backend}: nothing was "
                          "restored (restore into a store of the same backend)")
    if not (Path(data_dir) / KEY_FILE).exists():
        raise BackupError(f"no bundle-signing key in {data_dir}: restore the data directory's {KEY_FILE} first "
                          "(counters pinned it; a new key would make them refuse every bundle)")
    key = load_or_create(data_dir)
    now = _now_ms() if now_ms is None else now_ms
    if backend == "sqlite" and sqlite_in_use(sqlite_path(url)):
        raise BackupError(f"{sqlite_path(url)} is open in another process: stop the centre before restoring")
    # The restore numbers bundles and feed positions from this clock, above what the lost database issued;
    # a clock behind the backup or an earlier restore would hand out versions counters already hold.
    seen = max(manifest.created_ms, _last_restore_ms(url, backend))
    if now < seen:
        raise BackupError(f"this machine's clock ({now} ms) is behind the backup or an earlier restore ({seen} ms): "
                          "fix the clock (NTP) and run the restore again; nothing was restored")
    if backend == "sqlite":
        db_path = sqlite_path(url)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = db_path.with_name(db_path.name + ".restoring")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            src.seek(offset)
            shutil.copyfileobj(src, dst, CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
        problem = sqlite_check(tmp) or _holds_migrations(tmp, manifest.migrations)
        if problem is not None:
            tmp.unlink()
            raise BackupError(f"the database inside {path} is damaged ({problem}): nothing was restored")
        for stale in ("-wal", "-shm", "-journal"):
            Path(str(db_path) + stale).unlink(missing_ok=True)
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
    else:
        db = open_db(url)
        try:
            others = other_sessions(db)
            if others:
                raise BackupError(f"{others} other session(s) are connected to the database: stop the centre "
                                  "(and close psql sessions) before restoring")
            clear_schema(db)
        finally:
            db.close()
        with tempfile.TemporaryDirectory(prefix=".centre-restore-", dir=path.parent) as work:
            dump = Path(work) / "dump"
            with open(path, "rb") as src, open(dump, "wb") as dst:
                src.seek(offset)
                shutil.copyfileobj(src, dst, CHUNK)
            _pg_tool(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
                      "--dbname", str(url), str(dump)], "pg_restore")
    store = open_store(url)
    try:
        epoch = store.restores.begin(now=now, backup_created_ms=manifest.created_ms,
                                     backup_sha256=manifest.payload_sha256, feed_floor=now)
        republished = _republish(store, key, now)
    finally:
        store.close()
    return Restored(manifest, epoch.id, republished)


def _holds_migrations(path: Path, names: list[str]) -> str | None:
    """None when the SQLite file at ``path`` records exactly the migrations its manifest names (a sound
    SQLite file of something else, wrapped by hand, must not replace the centre's database)."""
    from sync.centre.store.restore import sqlite_migration_names

    held = sqlite_migration_names(path)
    if held is None:
        return "no schema_migrations table: not a centre database"
    return None if held == sorted(names) else "its migrations differ from the manifest's: not this backup's database"


def _last_restore_ms(url: str, backend: str) -> int:
    """When the database about to be replaced was last restored (0 if unknown: missing, damaged, never)."""
    from sync.centre.store.db import open_db
    from sync.centre.store.restore import last_restore_ms

    if backend == "sqlite" and not sqlite_path(url).exists():
        return 0
    try:
        db = open_db(url)
    except Exception:
        return 0  # a damaged database is what restores are for: its history is simply unknown
    try:
        return last_restore_ms(db)
    except Exception:
        return 0
    finally:
        db.close()


def _republish(store, key, now: int) -> dict[str, int]:
    """Every kind's newest content again, signed as a full bundle numbered at least ``now``: above any
    version the lost database can have issued, so counters holding one take this as newer."""
    out = {}
    for kind, top in sorted(store.bundle_versions().items()):
        row = store.latest_bundle(kind)
        if row is None:
            continue
        payload = bundles.read_stored(row["raw"]).payload
        version = max(now, top + 1)
        store.put_bundle(bundles.build(key, kind=kind, version=version, payload=payload, created=now), now=now)
        out[kind] = version
    return out
