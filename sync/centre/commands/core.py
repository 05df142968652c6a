"""`centre` commands: run, migrate, enroll-token, publish, devices, rejections, register, revoke.

Every command takes ``--data-dir`` (default ./var/centre: holds bundle.key and, unless ``--db`` says
otherwise, the SQLite store centre.db) and ``--db`` (a path, sqlite:///path or postgresql://...).

Several workers over one PostgreSQL: ``centre migrate`` is the deploy step (the schema under an
advisory lock); ``centre run`` on PostgreSQL then refuses an older schema instead of migrating it
itself (SQLite, one process owning its file, still migrates on start). ``--bundle-key FILE`` (or
CENTRE_BUNDLE_KEY) is the deployed signing key every worker shares (:mod:`sync.centre.keys`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

DEFAULT_DATA_DIR = "./var/centre"
DEFAULT_PORT = 8700


def _common(p) -> None:
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"centre data directory: bundle-signing key, default store (default {DEFAULT_DATA_DIR})")
    p.add_argument("--db", default=None, metavar="URL",
                   help="store: a SQLite path, sqlite:///path or postgresql://user@host/db (default DIR/centre.db)")
    p.add_argument("--bundle-key", default=None, metavar="FILE",
                   help="the centre's bundle-signing key, deployed to every worker (default $CENTRE_BUNDLE_KEY, "
                        "else DIR/bundle.key, created on first use)")


def register(sub) -> None:
    p = sub.add_parser("run", help="serve the centre (ingest, downlink, enrolment, online, review) over HTTP",
                       description="Run the centre's HTTP service with hypercorn's trio worker until interrupted.")
    _common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any free)")
    p.add_argument("--no-background", action="store_true", help="do not start background tasks (reconciliation)")
    p.add_argument("--verify-processes", type=int, default=0, metavar="N",
                   help="verify uploaded entries in N worker processes (default 0: worker threads)")
    p.add_argument("--certfile", default=None, metavar="PEM",
                   help="serve TLS (https) with this certificate chain; needs --keyfile (docs/operations.md, Security)")
    p.add_argument("--keyfile", default=None, metavar="PEM", help="the private key of --certfile")
    p.set_defaults(func=run)

    p = sub.add_parser("migrate", help="apply pending schema migrations (the deploy step before starting workers)",
                       description="Apply every pending migration of the centre's schema, under PostgreSQL's "
                                   "advisory lock (safe to run from several machines at once), and record the "
                                   "bundle-signing key's id. Prints the names applied.")
    _common(p)
    p.set_defaults(func=migrate)

    p = sub.add_parser("enroll-token", help="issue a one-time enrolment token for a new device of a site",
                       description="Print a one-time token; on the counter PC run `edge enroll URL TOKEN`.")
    _common(p)
    p.add_argument("--site", required=True, help="site code, e.g. S330300001")
    p.add_argument("--ttl-hours", type=float, default=168, help="hours until the token expires (default 168)")
    p.set_defaults(func=enroll_token)

    p = sub.add_parser("publish", help="sign and publish catalogue/policy/persons/hotlist bundles from source files",
                       description="Build signed, versioned bundles (full and delta) from a directory of "
                                   "catalogue/policy/persons/hotlist .json or .csv files and offer them to devices.")
    _common(p)
    p.add_argument("--source", metavar="DIR", help="directory of source files (e.g. sync/centre/sample)")
    p.add_argument("--kind", action="append", choices=("catalogue", "policy", "persons", "hotlist"),
                   help="publish only this kind (repeatable; default all found)")
    p.add_argument("--from-ledger", action="store_true",
                   help="publish the persons bundle from the centre's ledger (balances, years, accumulators and "
                        "each device's reflected seq, over the persons last published) instead of source files; "
                        "`centre run` does it by itself every 10 minutes")
    p.set_defaults(func=publish)

    p = sub.add_parser("devices", help="list enrolled devices with their high-water marks",
                       description="One JSON object per enrolled device.")
    _common(p)
    p.set_defaults(func=devices)

    p = sub.add_parser("rejections", help="list entries the centre rejected at ingest (code, message)",
                       description="One JSON object per rejected entry: device, seq, code, message, received_ms.")
    _common(p)
    p.add_argument("--device", default=None, help="only this device")
    p.set_defaults(func=rejections)

    p = sub.add_parser("register", help="register a known device and its public key (after restoring a backup)",
                       description="Register a device id with its public key without a token: for devices "
                                   "enrolled after the backup the centre was restored from.")
    _common(p)
    p.add_argument("device", help="device id, e.g. D-S330300001-1 (from the device's device.json)")
    p.add_argument("--site", required=True, help="site code, e.g. S330300001")
    p.add_argument("--pubkey", required=True, help="the device's public key, base64 or hex (edge journal export)")
    p.set_defaults(func=register_device)

    p = sub.add_parser("revoke", help="revoke a device: its uploads and requests are refused from now on",
                       description="Revoke a device (lost or stolen PC). Entries already stored stay.")
    _common(p)
    p.add_argument("device", help="device id, e.g. D-S330300001-1")
    p.set_defaults(func=revoke)


def db_url(args) -> str:
    return args.db or str(Path(args.data_dir) / "centre.db")


def _open(args):
    from sync.centre.store import open_store

    return open_store(db_url(args))


def _fail(exc) -> int:
    print(f"centre: {exc.message} [{exc.code}]", file=sys.stderr)
    return 1


def _key(args):
    from sync.centre.keys import resolve

    return resolve(args.data_dir, getattr(args, "bundle_key", None))


def migrate(args) -> int:
    from sync.centre.keys import check_recorded
    from sync.centre.store import Store
    from sync.centre.store import schema
    from sync.errors import SyncError

    try:
        store = Store.open(db_url(args), migrate=False)
        try:
            done = schema.migrate(store.db)
            key_id = check_recorded(store, _key(args))
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    for name in done:
        print(name)
    print(f"centre: schema up to date ({len(done)} applied now); bundle key id {key_id}", file=sys.stderr)
    return 0


def run(args) -> int:
    import trio

    from sync.centre.keys import check_recorded
    from sync.centre.server import run_centre
    from sync.centre.store import Store
    from sync.errors import SyncError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        url = db_url(args)
        # PostgreSQL is shared by many workers: the schema is a deploy step, never a side effect of
        # starting one (workers started together on a fresh or upgraded schema used to die).
        store = Store.open(url, migrate=not url.startswith(("postgresql://", "postgres://")))
        try:
            pending = store.pending_migrations()
            if pending:
                print(f"centre: the database schema is older than this centre ({len(pending)} migrations pending: "
                      f"{', '.join(pending)}); run `centre migrate --db URL` first, then start the workers "
                      "[schema_pending]", file=sys.stderr)
                store.close()
                return 2
            check_recorded(store, _key(args))
            key = _key(args)
        except BaseException:
            store.close()
            raise
    except SyncError as exc:
        return _fail(exc)
    if bool(args.certfile) != bool(args.keyfile):
        store.close()
        print("centre: TLS needs both --certfile and --keyfile [tls_incomplete]", file=sys.stderr)
        return 2
    if args.certfile:
        # Checked before serving: hypercorn loads them inside its worker, where a missing or damaged
        # file ended the centre with a traceback that named neither file (found by attacking).
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.certfile, args.keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            store.close()
            print(f"centre: cannot serve TLS with --certfile {args.certfile} and --keyfile {args.keyfile} ({exc}): "
                  "they must be the PEM certificate chain and its own private key [bad_tls_file]", file=sys.stderr)
            return 2

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(lambda task_status: run_centre(
                store, key, host=args.host, port=args.port, background=not args.no_background,
                verify_processes=args.verify_processes, certfile=args.certfile, keyfile=args.keyfile,
                task_status=task_status))
            print(f"centre: listening on {url} (store {store.backend}: {db_url(args)})", flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def enroll_token(args) -> int:
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            token = store.create_enrol_token(args.site, ttl_ms=int(args.ttl_hours * 3_600_000))
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    print(token)
    return 0


def publish(args) -> int:
    from sync.centre.keys import check_recorded
    from sync.centre.errors import SourceError
    from sync.centre.publish import KINDS, publish as do_publish, publish_persons_from_ledger
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            key = _key(args)
            check_recorded(store, key)
            if args.from_ledger == (args.source is not None):
                raise SourceError("give either --source DIR (source files) or --from-ledger (persons from the "
                                  "centre's ledger)")
            if args.from_ledger:
                if args.kind and args.kind != ["persons"]:
                    raise SourceError("--from-ledger publishes the persons bundle only")
                rows = publish_persons_from_ledger(store, key)
            else:
                rows = do_publish(store, key, args.source, kinds=tuple(args.kind or KINDS))
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    if not rows:
        print("centre: nothing changed since the last publication", file=sys.stderr)
    return 0


def devices(args) -> int:
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            for d in store.devices():
                print(json.dumps({"device": d.device, "site": d.site, "status": d.status, "high_water": d.high_water,
                                  "enrolled_ms": d.enrolled_ms}))
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    return 0


def rejections(args) -> int:
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            for r in store.rejections(args.device):
                print(json.dumps({k: r[k] for k in ("device", "seq", "code", "message", "received_ms")},
                                 ensure_ascii=False))
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    return 0


def register_device(args) -> int:
    from sync.keys import verify_key_from_text
    from sync.errors import SyncError

    try:
        pub = bytes(verify_key_from_text(args.pubkey))
    except ValueError as exc:
        print(f"centre: {exc}", file=sys.stderr)
        return 1
    try:
        store = _open(args)
        try:
            if store.device(args.device) is not None:
                print(f"centre: {args.device} is already registered", file=sys.stderr)
                return 1
            store.register_device(args.device, args.site, pub)
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    print(f"registered {args.device}")
    return 0


def revoke(args) -> int:
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            if store.device(args.device) is None:
                print(f"centre: no device {args.device} is enrolled", file=sys.stderr)
                return 1
            store.revoke_device(args.device)
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    print(f"revoked {args.device}")
    return 0
