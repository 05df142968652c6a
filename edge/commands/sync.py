"""`edge` commands of the sync group: enroll, sync.

``edge enroll URL TOKEN`` registers this PC with the centre (writes device.key and device.json in
the state directory). ``edge sync --once`` runs one uplink round by hand (technicians): applies new
bundles to the cache, sends the outbox and prints a summary; outcomes stay on the centre's feed for
the daemon, which owns them.
"""

from __future__ import annotations

import json
import sys

DEFAULT_STATE_DIR = "./var/edge"


def register(sub) -> None:
    p = sub.add_parser("enroll", help="enrol this device with the city centre using a one-time token",
                       description="Register this device's key with the centre (token from `centre enroll-token`) "
                                   "and pin the centre's bundle-signing key in device.json.")
    p.add_argument("url", metavar="URL", help="the centre's base URL, e.g. http://centre.example:8700")
    p.add_argument("token", metavar="TOKEN", help="the one-time enrolment token")
    p.add_argument("--ca", default=None, metavar="FILE",
                   help="PEM certificate of the CA that issued the centre's TLS certificate; copied to the state "
                        "directory (centre-ca.pem) and trusted alone from then on (default: the system's CAs)")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"edge state directory (default {DEFAULT_STATE_DIR})")
    p.set_defaults(func=enroll)

    p = sub.add_parser("sync", help="send the journal's outbox to the centre and fetch bundles now",
                       description="Run uplink rounds by hand: apply new bundles, send unacknowledged entries.")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"edge state directory (default {DEFAULT_STATE_DIR})")
    p.add_argument("--once", action="store_true", help="one round, print a summary and exit (default: keep running)")
    p.set_defaults(func=sync)


def enroll(args) -> int:
    from functools import partial

    import trio

    from edge.enrol import enroll as do_enroll
    from sync.errors import SyncError

    try:
        cfg = trio.run(partial(do_enroll, args.url, args.token, args.state_dir, ca_file=args.ca))
    except SyncError as exc:
        print(f"edge enroll: {exc.message} [{exc.code}]", file=sys.stderr)
        return 1
    print(json.dumps({"device": cfg.device, "site": cfg.site, "centre_url": cfg.centre_url,
                      "bundle_key_id": cfg.bundle_key_id}, ensure_ascii=False))
    return 0


async def _sync(args) -> int:
    from pathlib import Path

    import trio

    from edge.enrol import load_device
    from edge.journal.keys import load_device_key
    from edge.journal.store import JournalStore
    from edge.transport import centre_client
    from edge.uplink import DownlinkDeferred, open_uplink, wall_ms

    state = Path(args.state_dir)
    cfg = load_device(state)
    journal = JournalStore.open(state / "journal.db", signing_key=load_device_key(state / "device.key"),
                                device=cfg.device)
    cache = None
    try:
        from edge.cache import Cache

        cache = Cache.open(state / "cache.db")
    except ImportError:  # pragma: no cover - the cache package ships with the edge
        pass

    async def on_downlink(m):
        if m["kind"] != "bundle" or cache is None:
            raise DownlinkDeferred()
        await trio.to_thread.run_sync(lambda: cache.apply_bundle_isolated(m["payload"], cfg.bundle_verify_key,
                                                                         now_ms=wall_ms()))

    try:
        async with centre_client(state) as client:
            up = await open_uplink(state, journal, client=client, on_downlink=on_downlink)
            if args.once:
                report = await up.sync_once()
                print(json.dumps({"device": cfg.device, "downlink": report.downlink, "uploaded": report.uploaded,
                                  "acked_seq": journal.acked_seq, "backlog": journal.backlog().count,
                                  "quarantined": [list(q) for q in journal.quarantined()],
                                  "refused_downlink": up.status.refused}, ensure_ascii=False))
                return 0
            await up.run()
    finally:
        journal.close()
        if cache is not None:
            cache.close()
    return 0


def sync(args) -> int:
    import trio

    from edge.journal.errors import JournalError
    from sync.errors import SyncError

    try:
        return trio.run(_sync, args)
    except (SyncError, JournalError) as exc:
        print(f"edge sync: {exc.message} [{exc.code}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
