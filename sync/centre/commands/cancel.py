"""`centre cancel --device D --seq N --reason R [--who NAME]`: cancel a reconciled settlement at the
centre (the path for what the counter cannot cancel; sync/centre/cancel.py)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from sync.centre.commands.core import _common

    p = sub.add_parser("cancel", help="cancel a reconciled settlement at the centre (reversing adjustment)",
                       description="Reverse a settlement the centre has reconciled (fund, account and deductible back; "
                                   "the cash owed to the patient), record it for the daily report and tell the "
                                   "counter. The settlement's outcome is never edited.")
    _common(p)
    p.add_argument("--device", required=True, help="the device that journaled the settlement")
    p.add_argument("--seq", required=True, type=int, help="the settlement's journal seq on that device")
    p.add_argument("--reason", required=True, help="why (shown to the patient at the counter)")
    p.add_argument("--who", default="centre-operator", help="who cancels (recorded in the action log)")
    p.set_defaults(func=cmd_cancel)


def cmd_cancel(args) -> int:
    from sync.centre.cancel import cancel_settlement
    from sync.centre.commands.core import _open
    from sync.errors import SyncError

    store = _open(args)
    try:
        out = cancel_settlement(store, args.device, args.seq, reason=args.reason, who=args.who)
    except SyncError as exc:
        print(f"cancel: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(out, ensure_ascii=False))
    return 0
