"""``edge journal …``: check, export, inspect and (guardedly) reset the local journal.

    edge journal status          device, key id, head, acknowledged, backlog, quarantined
    edge journal verify          every entry: signature, seq continuity, prev chain, schema (+ SQLite check)
    edge journal export FILE     self-contained export: entries + public key + signed manifest
    edge journal verify-export FILE [--pubkey KEY]   the auditor's tool: needs nothing but the file
    edge journal receipt PAYLOAD check a receipt's QR payload (or "seq digest") against the journal
    edge journal show SEQ        one entry as JSON
    edge journal pubkey          the device's public key and key id (what the centre registers)
    edge journal reset [--force --export FILE]   empty the journal; refused while entries are unsent

Exit status: 0 ok; 1 verification failed or the action was refused; 2 the journal/file cannot be used
(the message says what to do). ``--json`` prints one JSON object on stdout instead of text.
The state directory is ``--state-dir``, else $EDGE_STATE_DIR, else ./var/edge; the device id comes from
``device.json`` when present, else from the journal itself (so verify works on a copied journal.db).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_STATE_DIR = "./var/edge"


def register(sub) -> None:
    p = sub.add_parser("journal", help="verify, export and inspect the signed journal",
                       description="The signed, hash-chained journal of everything this counter did.")
    jsub = p.add_subparsers(dest="journal_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_UNUSABLE)[1])

    def add(name, func, help_text, description=None):
        q = jsub.add_parser(name, help=help_text, description=description or help_text)
        if name != "verify-export":
            q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
        q.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        q.set_defaults(func=func)
        return q

    add("status", cmd_status, "show head, acknowledged seq, backlog and quarantined entries")
    add("verify", cmd_verify, "verify every local entry and name the first bad seq and why",
        "Check signatures, seq continuity, the prev chain and entry schemas of the local journal, plus "
        "SQLite's own structural check. Exit 1 names the first bad seq and the reason.")
    q = add("export", cmd_export, "write a self-contained export (entries + public key + manifest) to FILE",
            "Write the journal to FILE for an auditor or before a forced reset; check it with verify-export.")
    q.add_argument("file", metavar="FILE", help="where to write the export (replaced atomically)")
    q.add_argument("--from-seq", type=int, default=1, metavar="N", help="export from entry N (default 1)")
    q = add("verify-export", cmd_verify_export, "verify an export file with nothing else (the auditor's tool)",
            "Check an export: manifest, every signature, seq continuity, prev chain, count, end of file.")
    q.add_argument("file", metavar="FILE", help="the export file")
    q.add_argument("--pubkey", metavar="KEY",
                   help="the device public key the centre registered (base64 or hex); without it the key "
                        "inside the export is used and the report says so")
    q = add("receipt", cmd_receipt, "check a receipt's QR payload (SSJ1:device:seq:digest) against the journal")
    q.add_argument("payload", metavar="PAYLOAD", help="the QR text, or 'SEQ:DIGEST' as printed on the receipt")
    q.add_argument("--export", metavar="FILE", help="check against an export file instead of the local journal")
    q = add("show", cmd_show, "print one entry (envelope and body) as JSON")
    q.add_argument("seq", type=int, metavar="SEQ", help="the entry's seq")
    add("pubkey", cmd_pubkey, "print the device public key and key id (registered with the centre)")
    q = add("reset", cmd_reset, "empty the journal before re-enrolment (refused while entries are unsent)",
            "Empty the local journal. Refused while any entry is unacknowledged by the centre, unless "
            "--force with --export FILE (the export is written and checked first). The emptied journal only "
            "accepts a newly enrolled device.")
    q.add_argument("--force", action="store_true", help="reset even with unsent entries (needs --export)")
    q.add_argument("--export", metavar="FILE", help="write an export here first (required with --force)")


# -- helpers ------------------------------------------------------------------------------------

def state_dir(args) -> Path:
    return Path(getattr(args, "state_dir", None) or os.environ.get("EDGE_STATE_DIR") or DEFAULT_STATE_DIR)


def _device_id(state: Path) -> str | None:
    try:
        return json.loads((state / "device.json").read_text(encoding="utf-8"))["device"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not enrolled here, or a copied journal: the journal's own record is used


def open_journal(args, *, with_key: bool = False):
    """Open the state dir's journal; reading needs no key (a broken key must not hide the journal)."""
    from edge.journal import JournalError, JournalMissing, JournalStore, load_device_key

    state = state_dir(args)
    db = state / "journal.db"
    if not db.exists():
        raise JournalMissing(f"there is no journal at {db}",
                             hint="Give --state-dir (or set EDGE_STATE_DIR) to the agent's state directory.")
    key = None
    if with_key:
        try:
            key = load_device_key(state / "device.key")
        except JournalError as exc:
            _warn(args, f"device key not usable ({exc.message}); the export manifest will be unsigned")
    return JournalStore.open(db, signing_key=key, device=_device_id(state))


def _warn(args, text: str) -> None:
    print(f"edge journal: warning: {text}", file=sys.stderr)


def _emit(args, data: dict, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if args.json else text)


def _fail(args, exc) -> int:
    data = exc.to_dict() if hasattr(exc, "to_dict") else {"code": "error", "message": str(exc)}
    if args.json:
        print(json.dumps({"error": data}, ensure_ascii=False))
    else:
        print(f"edge journal {args.journal_command}: {data['message']}", file=sys.stderr)
        if data.get("hint"):
            print(f"  what to do: {data['hint']}", file=sys.stderr)
    return EXIT_UNUSABLE


def _guarded(func):
    def run(args) -> int:
        from edge.journal import EntryFormatError, JournalError

        try:
            return func(args)
        except (JournalError, EntryFormatError) as exc:
            return _fail(args, exc)
    run.__doc__ = func.__doc__
    return run


# -- commands -----------------------------------------------------------------------------------

@_guarded
def cmd_status(args) -> int:
    with open_journal(args) as j:
        head, head_hash = j.head()
        backlog = j.backlog()
        data = {"device": j.device, "key_id": j.key_id, "head_seq": head, "head_hash": head_hash.hex(),
                "acked_seq": j.acked_seq, "unacknowledged": j.unacknowledged(),
                "backlog": {"count": backlog.count, "oldest_time_ms": backlog.oldest_time_ms, "bytes": backlog.bytes},
                "quarantined": [{"seq": s, "code": c, "message": m} for s, c, m in j.quarantined()]}
    text = (f"device {data['device']}  key {data['key_id']}\n"
            f"entries 1..{head}, acknowledged by the centre up to {data['acked_seq']} "
            f"({data['unacknowledged']} unacknowledged)\n"
            f"backlog {backlog.count} entries, {backlog.bytes} bytes")
    for q in data["quarantined"]:
        text += f"\nquarantined: seq {q['seq']} [{q['code']}] {q['message']}"
    _emit(args, data, text)
    return EXIT_OK


@_guarded
def cmd_verify(args) -> int:
    with open_journal(args) as j:
        problems = j.integrity_problems()
        report = j.verify()
        data = {**report.to_dict(), "device": j.device, "key_id": j.key_id, "sqlite": problems or "ok"}
    text = report.text()
    if problems:
        text += "\nSQLite structural check: " + "; ".join(problems[:5])
    data["ok"] = ok = report.ok and not problems
    _emit(args, data, text)
    return EXIT_OK if ok else EXIT_FAILED


@_guarded
def cmd_export(args) -> int:
    from edge.journal import verify_export, write_export

    with open_journal(args, with_key=True) as j:
        summary = write_export(j, args.file, from_seq=args.from_seq)
    check = verify_export(summary.path, pubkey=None)
    data = {"file": str(summary.path), "device": summary.device, "key_id": summary.key_id,
            "first_seq": summary.first_seq, "last_seq": summary.last_seq, "count": summary.count,
            "bytes": summary.bytes, "verified": check.ok}
    _emit(args, data, f"exported entries {summary.first_seq}..{summary.last_seq} ({summary.count}) of "
                      f"{summary.device} to {summary.path} ({summary.bytes} bytes); check: "
                      f"{'OK' if check.ok else check.report.text()}")
    return EXIT_OK if check.ok else EXIT_FAILED


@_guarded
def cmd_verify_export(args) -> int:
    from edge.journal import verify_export, verify_key_from_text

    key = None
    if args.pubkey:
        try:
            key = verify_key_from_text(args.pubkey)
        except ValueError as exc:
            print(f"edge journal verify-export: --pubkey: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    result = verify_export(args.file, pubkey=key)
    _emit(args, result.to_dict(), result.text())
    return EXIT_OK if result.ok else EXIT_FAILED


def _parse_receipt(payload: str) -> tuple[str | None, int, str]:
    from edge.journal import EntryFormatError, parse_qr_payload

    if payload.startswith("SSJ1:"):
        return parse_qr_payload(payload)
    parts = payload.replace(" ", ":").split(":")
    if len(parts) == 2 and parts[0].isdigit():
        return None, int(parts[0]), parts[1].upper()
    raise EntryFormatError(f"not a receipt payload: {payload!r} (give the QR text SSJ1:device:seq:digest or "
                           "SEQ:DIGEST from the receipt)")


@_guarded
def cmd_receipt(args) -> int:
    from edge.journal import verify_export

    device, seq, digest = _parse_receipt(args.payload)
    if args.export:
        result = verify_export(args.export)
        entry = _entry_from_export(args.export, seq) if result.ok else None
        where, journal_device = args.export, result.device
        if not result.ok:
            _emit(args, {"ok": False, "reason": "export_invalid", "detail": result.report.text()},
                  f"the export does not verify: {result.report.text()}")
            return EXIT_FAILED
    else:
        with open_journal(args) as j:
            entry, where, journal_device = j.get(seq), "the local journal", j.device
    if device is not None and device != journal_device:
        ok, why = False, f"the receipt is from device {device}, {where} is device {journal_device}"
    elif entry is None:
        ok, why = False, f"entry {seq} is not in {where}"
    elif entry.digest != digest:
        ok, why = False, f"entry {seq} has digest {entry.digest}, the receipt says {digest}"
    else:
        ok, why = True, f"receipt matches entry {seq} ({entry.kind}) of {journal_device}"
    _emit(args, {"ok": ok, "seq": seq, "detail": why}, ("OK: " if ok else "MISMATCH: ") + why)
    return EXIT_OK if ok else EXIT_FAILED


def _entry_from_export(path: str, seq: int):
    import cbor2

    from edge.journal import decode

    with open(path, "rb") as f:
        dec = cbor2.CBORDecoder(f)
        dec.decode()  # header (already verified)
        while f.peek(1):
            item = dec.decode()
            if isinstance(item, bytes):
                entry = decode(item)
                if entry.seq == seq:
                    return entry
    return None


def _jsonable(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@_guarded
def cmd_show(args) -> int:
    from edge.journal import qr_payload

    with open_journal(args) as j:
        entry = j.get(args.seq)
        head = j.head()[0]
    if entry is None:
        print(f"edge journal show: no entry {args.seq} (the journal has 1..{head})", file=sys.stderr)
        return EXIT_FAILED
    data = {**_jsonable(entry.unsigned()), "hash": entry.hash.hex(), "digest": entry.digest,
            "qr": qr_payload(entry), "sig": entry.sig.hex()}
    print(json.dumps(data, ensure_ascii=False, indent=None if args.json else 2))
    return EXIT_OK


@_guarded
def cmd_pubkey(args) -> int:
    from edge.journal import JournalError, key_id, load_device_key, public_key_b64

    state = state_dir(args)
    try:
        verify_key = load_device_key(state / "device.key").verify_key
    except JournalError:
        if not (state / "journal.db").exists():
            raise
        with open_journal(args) as j:  # the journal records the public key it was started with
            verify_key = j.verify_key
    data = {"public_key": public_key_b64(verify_key), "key_id": key_id(verify_key),
            "device": _device_id(state)}
    _emit(args, data, f"{data['public_key']}  (key id {data['key_id']})")
    return EXIT_OK


@_guarded
def cmd_reset(args) -> int:
    from edge.journal import UnsentEntries

    if args.export and Path(args.export).exists():
        print(f"edge journal reset: {args.export} exists; give a new file name (an export is never overwritten)",
              file=sys.stderr)
        return EXIT_UNUSABLE
    with open_journal(args, with_key=True) as j:
        try:
            report = j.reset(force=args.force, export_to=args.export)
        except UnsentEntries as exc:
            _fail(args, exc)
            return EXIT_FAILED
    data = {"removed": report.removed, "unsent": report.unsent,
            "exported_to": str(report.exported_to) if report.exported_to else None}
    text = f"journal emptied: {report.removed} entries removed"
    if report.exported_to:  # reset() verified the export before removing anything
        text += (f"; the verified export {report.exported_to} holds them, including {report.unsent} the centre "
                 "never acknowledged: keep it and send it to the centre")
    _emit(args, data, text + ". Re-enrol the device before settling again.")
    return EXIT_OK
