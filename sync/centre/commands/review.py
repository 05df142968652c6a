"""`centre` commands for reconciliation, review and the person ledger.

    centre reconcile                                  reconcile everything pending now
    centre report --site S --date D [--format json|csv|html|text]
    centre reviewer add NAME --role reviewer|auditor  (password from --password-stdin or a prompt)
    centre ledger load FILE|DIR                       seed the ledger from person source data
    centre ledger show PSN
    centre ledger contribute PSN AMOUNT               monthly account contribution (fen; clears debts)
    centre ledger suspend PSN --from D [--to D]       record employer arrears for a period
    centre ledger clear-arrears PSN                   the employer paid (auto-approves waiting claims)
    centre ledger close-review PSN [--note TEXT]      close earlier reviews (auto-approves waiting claims)
    centre claims [--status pending|approved|denied|all]
    centre dispute list [--all]                       settlements sent to review
    centre dispute decide DEVICE SEQ --accept|--reject --note TEXT

All take ``--data-dir``/``--db`` like the other centre commands. Errors print one line with the code
and exit 1; nothing is half-done (each operation is one transaction).
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path


def _common(p) -> None:
    from sync.centre.commands.core import _common as core_common
    core_common(p)
    p.add_argument("--who", default="operator", help="name recorded in the centre's action journal (default operator)")


def register(sub) -> None:
    p = sub.add_parser("reconcile", help="reconcile every accepted entry not reconciled yet, now",
                       description="Replay pending settlements, cancels and claims with the engine against the "
                                   "ledger, then auto-approve the claims whose cause has cleared. Prints counts.")
    _common(p)
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("report", help="daily per-site reconciliation: journaled vs accepted, differences explained",
                       description="Counts and sums of medfee, fund, account and cash as journaled and as accepted "
                                   "for one site and visit date, each difference with the outcome explaining it.")
    _common(p)
    p.add_argument("--site", required=True, help="site code, e.g. S330300001")
    p.add_argument("--date", required=True, help="visit date YYYY-MM-DD")
    p.add_argument("--format", default="json", choices=("json", "csv", "html", "text"),
                   help="output format (default json)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reviewer", help="reviewer accounts for the review page and API",
                       description="Manage reviewer accounts (scrypt-hashed passwords).")
    rsub = p.add_subparsers(dest="reviewer_command", metavar="ACTION")
    q = rsub.add_parser("add", help="add a reviewer account", description="Add an account; the password is read "
                                                                          "from stdin (--password-stdin) or prompted.")
    _common(q)
    q.add_argument("name", help="login name")
    q.add_argument("--role", default="reviewer", choices=("reviewer", "auditor"),
                   help="reviewer: decides claims; auditor: reads only (default reviewer)")
    q.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    q.set_defaults(func=cmd_reviewer_add)
    p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])

    p = sub.add_parser("ledger", help="the authoritative person ledger and operations that move it forward",
                       description="Load persons, post contributions, record and clear arrears, close reviews.")
    lsub = p.add_subparsers(dest="ledger_command", metavar="ACTION")
    q = lsub.add_parser("load", help="seed the ledger from person source data (persons.json or a source directory)",
                        description="New persons are added with their balances; known persons keep their balances "
                                    "and get identity fields refreshed.")
    _common(q)
    q.add_argument("file", help="persons.json ({\"persons\": [...]}), persons.csv, or a source directory")
    q.set_defaults(func=cmd_ledger_load)
    q = lsub.add_parser("show", help="print a person's ledger: balance, totals, arrears, reviews, debts",
                        description="One JSON object.")
    _common(q)
    q.add_argument("psn", help="person number psn_no")
    q.set_defaults(func=cmd_ledger_show)
    q = lsub.add_parser("contribute", help="post a monthly account contribution (clears account debts first)",
                        description="Add AMOUNT fen to the person's account balance.")
    _common(q)
    q.add_argument("psn", help="person number psn_no")
    q.add_argument("amount", type=int, help="amount in fen (e.g. 30000 for ¥300.00)")
    q.set_defaults(func=cmd_contribute)
    q = lsub.add_parser("suspend", help="record employer arrears for a period (status suspended)",
                        description="Open an arrears period; visits in it get no fund pay until it is cleared.")
    _common(q)
    q.add_argument("psn", help="person number psn_no")
    q.add_argument("--from", dest="begin", required=True, help="first day YYYY-MM-DD")
    q.add_argument("--to", dest="end", default=None, help="last day YYYY-MM-DD (default: open)")
    q.set_defaults(func=cmd_suspend)
    q = lsub.add_parser("clear-arrears", help="the employer paid: clear open arrears, auto-approve waiting claims",
                        description="Clear every open arrears period of the person, then approve the claims waiting "
                                    "for it.")
    _common(q)
    q.add_argument("psn", help="person number psn_no")
    q.set_defaults(func=cmd_clear_arrears)
    q = lsub.add_parser("close-review", help="close the person's earlier reviews, auto-approve waiting claims",
                        description="Close every open review of the person, then approve the claims waiting for it.")
    _common(q)
    q.add_argument("psn", help="person number psn_no")
    q.add_argument("--note", default="", help="why the review is closed")
    q.set_defaults(func=cmd_close_review)
    p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])

    p = sub.add_parser("dispute", help="settlements reconciliation sent to review: list, accept or reject",
                       description="Disputed settlements (fund beyond the offline limits, hotlisted card, unknown "
                                   "bundle, miscomputed): a reviewer accepts the journaled figures or rejects them.")
    dsub = p.add_subparsers(dest="dispute_command", metavar="ACTION")
    q = dsub.add_parser("list", help="list disputed settlements (JSON lines)", description="Open ones by default.")
    _common(q)
    q.add_argument("--all", action="store_true", help="include decided ones")
    q.set_defaults(func=cmd_dispute_list)
    q = dsub.add_parser("decide", help="accept or reject one disputed settlement, with a note",
                        description="accept: the ledger moves by the journaled figures; reject: nothing is accepted.")
    _common(q)
    q.add_argument("device", help="device id of the entry, e.g. D-S330300001-1")
    q.add_argument("seq", type=int, help="seq of the settlement entry")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--accept", action="store_true", help="accept the figures the counter journaled")
    how.add_argument("--reject", action="store_true", help="accept nothing")
    q.add_argument("--note", required=True, help="why (recorded and sent to the counter)")
    q.set_defaults(func=cmd_dispute_decide)
    p.set_defaults(func=lambda args, p=p: (p.print_help(), 2)[1])

    p = sub.add_parser("claims", help="list full-payment claims (JSON lines)",
                       description="One JSON object per claim, oldest first.")
    _common(p)
    p.add_argument("--status", default="pending", choices=("pending", "approved", "denied", "all"),
                   help="which claims (default pending)")
    p.set_defaults(func=cmd_claims)


def _run(args, fn) -> int:
    from sync.centre.commands.core import _fail, _open
    from sync.errors import SyncError

    try:
        store = _open(args)
        try:
            return fn(store) or 0
        finally:
            store.close()
    except SyncError as exc:
        return _fail(exc)
    except ValueError as exc:  # report.ReportError and friends
        print(f"centre: {exc} [{getattr(exc, 'code', 'bad_request')}]", file=sys.stderr)
        return 1


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True))


def cmd_reconcile(args) -> int:
    from sync.centre import reconcile
    return _run(args, lambda store: _print(reconcile.run_pending(store)))


def cmd_report(args) -> int:
    from sync.centre import report

    def go(store):
        print(report.RENDERERS[args.format](report.daily(store, args.site, args.date)))
    return _run(args, go)


def cmd_reviewer_add(args) -> int:
    from sync.centre.store import now_ms

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    return _run(args, lambda store: _print(store.accounts.add(args.name, password, args.role, now=now_ms())))


def _persons_from(path: str) -> list:
    from sync.centre.errors import BadOperation

    p = Path(path)
    if p.is_dir() or p.suffix == ".csv":
        from sync.centre.publish import load_source
        data = load_source(p if p.is_dir() else p.parent, "persons")
    else:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadOperation(f"cannot read {path}: {exc}; give persons.json or the source directory") from None
    persons = data.get("persons") if isinstance(data, dict) else data
    if not isinstance(persons, list):
        raise BadOperation(f"{path} holds no persons list ({{\"persons\": [...]}})")
    return persons


def cmd_ledger_load(args) -> int:
    return _run(args, lambda store: _print(store.ledger.seed_from_persons(_persons_from(args.file))))


def cmd_ledger_show(args) -> int:
    def go(store):
        out = store.ledger.snapshot(args.psn)
        out["debt"] = store.ledger.require(args.psn).debt
        out["reviews"] = [{k: r[k] for k in ("code", "reason", "opened_ms", "closed_ms")}
                          for r in store.ledger.reviews(args.psn)]
        out["arrears"] = store.ledger.arrears(args.psn)
        _print(out)
    return _run(args, go)


def cmd_contribute(args) -> int:
    return _run(args, lambda store: _print(store.ledger.contribute(args.psn, args.amount, who=args.who)))


def cmd_suspend(args) -> int:
    return _run(args, lambda store: _print(store.ledger.suspend(args.psn, args.begin, args.end, who=args.who)))


def _then_approve(store, result: dict, psn: str) -> None:
    from sync.centre import review
    result["auto_approved"] = review.auto_approve(store, psn_no=psn)
    _print(result)


def cmd_clear_arrears(args) -> int:
    return _run(args, lambda store: _then_approve(store, store.ledger.clear_arrears(args.psn, who=args.who),
                                                  args.psn))


def cmd_close_review(args) -> int:
    return _run(args, lambda store: _then_approve(
        store, store.ledger.close_review(args.psn, who=args.who, note=args.note), args.psn))


def cmd_dispute_list(args) -> int:
    from sync.centre import review

    def go(store):
        found = review.disputed(store, open_only=not args.all)
        for d in found:
            _print(d)
        if not found:       # said in words on stderr: stdout stays JSON lines for scripts
            print("no disputed settlements" + ("" if args.all else " open"), file=sys.stderr)
    return _run(args, go)


def cmd_dispute_decide(args) -> int:
    from sync.centre import review
    return _run(args, lambda store: _print(review.decide_settlement(store, args.device, args.seq, accept=args.accept,
                                                                    who=args.who, note=args.note)))


def cmd_claims(args) -> int:
    from sync.centre import review

    def go(store):
        found = review.claims(store, status=None if args.status == "all" else args.status)
        for c in found:
            _print(c)
        if not found:       # said in words on stderr: stdout stays JSON lines for scripts
            print(f"no claims ({args.status})", file=sys.stderr)
    return _run(args, go)
