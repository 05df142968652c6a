"""`centre` commands: backup FILE, restore FILE (logic in :mod:`sync.centre.backup`; steps in
docs/operations.md, "Backup and restore")."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from sync.centre.commands.core import _common

    p = sub.add_parser("backup", help="write a verifiable backup of the centre database to FILE (safe while running)",
                       description="SQLite: online backup API (consistent while the centre runs); PostgreSQL: "
                                   "pg_dump -Fc. The file carries a manifest (backend, migrations, time, SHA-256).")
    _common(p)
    p.add_argument("file", help="the backup file to write (replaced atomically)")
    p.set_defaults(func=backup)

    p = sub.add_parser("restore", help="restore the centre database from a backup FILE (stop the centre first)",
                       description="Verify FILE (header, SHA-256, backend, migrations), put it back, then start a "
                                   "new restore epoch: counters re-read their downlink, unspent enrolment tokens "
                                   "are void, bundles are re-signed with new versions. Refused while the centre runs.")
    _common(p)
    p.add_argument("file", help="a file written by `centre backup`")
    p.set_defaults(func=restore)


def _fail(exc) -> int:
    print(f"centre: {exc.message} [{exc.code}]", file=sys.stderr)
    return 1


def backup(args) -> int:
    from sync.centre.backup import backup as do_backup
    from sync.centre.commands.core import db_url
    from sync.errors import SyncError

    try:
        m = do_backup(db_url(args), args.file)
    except SyncError as exc:
        return _fail(exc)
    print(json.dumps({"file": args.file, "backend": m.backend, "created_ms": m.created_ms,
                      "bytes": m.payload_bytes, "sha256": m.payload_sha256}))
    return 0


def restore(args) -> int:
    from sync.centre.backup import restore as do_restore
    from sync.centre.commands.core import db_url
    from sync.errors import SyncError

    try:
        r = do_restore(db_url(args), args.file, data_dir=args.data_dir)
    except SyncError as exc:
        return _fail(exc)
    print(json.dumps({"restored": args.file, "backup_created_ms": r.manifest.created_ms, "epoch": r.epoch,
                      "republished": r.republished}))
    print("centre: restored. Re-issue enrolment tokens not yet used; register devices enrolled after the "
          "backup (`centre register DEVICE --site S --pubkey KEY`); see docs/operations.md", file=sys.stderr)
    return 0
