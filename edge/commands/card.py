"""``edge card``: the card reader from the command line (clerks' technicians, acceptance checks).

    edge card readers [--json]                       readers and whether a card is in each
    edge card read [--reader NAME] [--json] [--show-pii]
    edge card check-pin [--reader NAME]             PIN from the terminal (not echoed) or stdin
    edge card keyed-in CARD_NO SSN [--region CODE]  check what a clerk typed for a damaged card
    edge card watch [--json] [--show-pii]           print card events until Ctrl-C

Exit status: 0 done, 3 the card or reader refused (``{"error": {...}}`` with --json, else the
clerk's message in English and Chinese on stderr).
"""

from __future__ import annotations

import json
import signal
import sys
from functools import partial

EXIT_CARD_ERROR = 3


def register(sub) -> None:
    card = sub.add_parser("card", help="read the social security card through PC/SC",
                          description="Read the social security card through pcscd (see docs/card.md).")
    cmds = card.add_subparsers(dest="card_command", metavar="CARD_COMMAND")
    card.set_defaults(func=lambda args: card.print_help() or 2)

    p = cmds.add_parser("readers", help="list card readers and whether a card is in each",
                        description="List the PC/SC readers pcscd knows and whether each holds a card.")
    p.add_argument("--json", action="store_true", help="print JSON {reader: card_present}")
    p.set_defaults(func=run_readers)

    p = cmds.add_parser("read", help="read the holder's identity (no PIN); SSN and name redacted",
                        description="Read the card identification code, card number, SSN, name, sex, "
                                    "dates and ATR. Name, SSN and card number are masked unless --show-pii.")
    p.add_argument("--reader", metavar="NAME", help="reader name or a unique part of it "
                                                    "(default: the first reader with a card)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--show-pii", action="store_true", help="show name, SSN and card number in clear")
    p.set_defaults(func=run_read)

    p = cmds.add_parser("check-pin", help="check the holder's PIN on the card (uses up a try if wrong)",
                        description="Verify the PIN; it is read from the terminal without echo, or "
                                    "as one line from standard input. A wrong PIN uses up one of the "
                                    "card's tries.")
    p.add_argument("--reader", metavar="NAME", help="reader name or a unique part of it")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_check_pin)

    p = cmds.add_parser("keyed-in", help="check a card number and SSN typed from a damaged card",
                        description="Validate a keyed-in identity (card number + SSN, check digit "
                                    "included) and print it redacted. Keyed-in visits never settle offline.")
    p.add_argument("card_no", help="card number as printed on the card (9 characters)")
    p.add_argument("ssn", help="social security number (18 characters)")
    p.add_argument("--region", help="issuing region code (6 digits), if known")
    p.set_defaults(func=run_keyed_in)

    p = cmds.add_parser("watch", help="print card insert/remove events until Ctrl-C (what the daemon sees)",
                        description="Watch every reader and print one line per event: inserted (with "
                                    "the identity, redacted unless --show-pii), removed, error.")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--show-pii", action="store_true", help="show name, SSN and card number in clear")
    p.add_argument("--poll", type=float, default=0.2, metavar="SECONDS",
                   help="how often the readers are polled (default 0.2)")
    p.set_defaults(func=run_watch)


def _fail(args, exc) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False))
    else:
        print(f"edge card: {exc.message}\n{exc.zh}", file=sys.stderr)
    return EXIT_CARD_ERROR


def run_readers(args) -> int:
    import trio
    from edge.card import CardError, reader_status

    try:
        status = trio.run(reader_status)
    except CardError as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
    elif not status:
        print("no card readers attached")
    else:
        for name, present in status.items():
            print(f"{name}\t{'card' if present else 'empty'}")
    return 0


def run_read(args) -> int:
    import trio
    from edge.card import CardError, read_identity

    try:
        ident = trio.run(read_identity, args.reader)
    except CardError as exc:
        return _fail(args, exc)
    data = ident.to_dict() if args.show_pii else ident.redacted()
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            print(f"{key.ljust(width)}  {value}")
    return 0


def _read_pin() -> str:
    if sys.stdin.isatty():
        import getpass
        return getpass.getpass("PIN: ")
    return sys.stdin.readline().strip()


def run_check_pin(args) -> int:
    import trio
    from edge.card import CardError, verify_pin

    pin = _read_pin()
    try:
        trio.run(verify_pin, args.reader, pin)
    except CardError as exc:
        return _fail(args, exc)
    print(json.dumps({"pin": "ok"}) if args.json else "PIN correct")
    return 0


def run_keyed_in(args) -> int:
    from edge.card import CardError, keyed_in_identity

    try:
        ident = keyed_in_identity(args.card_no, args.ssn, region=args.region)
    except CardError as exc:
        args.json = True
        return _fail(args, exc)
    print(json.dumps(ident.redacted(), ensure_ascii=False))
    return 0


def _event_line(event, *, as_json: bool, show_pii: bool) -> str:
    ident = None
    if event.identity is not None:
        ident = event.identity.to_dict() if show_pii else event.identity.redacted()
    if as_json:
        return json.dumps({"kind": event.kind, "reader": event.reader, "identity": ident,
                           "error": event.error.to_dict() if event.error else None}, ensure_ascii=False)
    if event.kind == "inserted":
        if ident is None:  # the watcher always names the card it saw; print what there is if not
            return f"inserted  {event.reader}"
        return f"inserted  {event.reader}  {ident['name']}  {ident['card_no']}  region {ident['region']}  " \
               f"valid until {ident['expires']}"
    if event.kind == "removed":
        return f"removed   {event.reader}"
    return f"error     {event.reader or '-'}  {event.error.code}: {event.error.message} / {event.error.zh}"


def run_watch(args) -> int:
    import trio
    from edge.card import watch_cards

    async def stop_on_signal(cancel_scope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # Ctrl-C / SIGTERM end the watch in order (the watcher releases its PC/SC context).
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                cancel_scope.cancel()
                return

    async def main() -> None:
        send, receive = trio.open_memory_channel(0)
        async with trio.open_nursery() as nursery:
            await nursery.start(stop_on_signal, nursery.cancel_scope)
            await nursery.start(partial(watch_cards, send, poll_interval=args.poll))
            async with receive:
                async for event in receive:
                    print(_event_line(event, as_json=args.json, show_pii=args.show_pii), flush=True)

    trio.run(main)
    return 0
