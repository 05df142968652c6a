"""``edge settle-case``: run the pure engine on a case file (auditors, acceptance checks).

Exit status: 0 settled (JSON on stdout), 3 refused by the engine (``{"error": {...}}`` on stdout),
2 the file cannot be read or is not JSON (message on stderr).
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal

EXIT_REFUSED = 3
EXIT_UNREADABLE = 2


def register(sub) -> None:
    p = sub.add_parser("settle-case", help="settle a JSON case file with the pure engine and print the split",
                       description="Settle a case file (keys policy, catalogue, person, visit, items; "
                                   "'expected' is ignored) and print the split as one JSON object.")
    p.add_argument("file", metavar="FILE.json", help="the case file ('-' for standard input)")
    p.add_argument("--explain", action="store_true", help="print the reasons as readable text instead of JSON")
    p.set_defaults(func=run)


def load_case(path: str):
    """Read a case with exact decimals (parse_float=Decimal): 0.1 stays 0.1, never a binary float."""
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return json.loads(text, parse_float=Decimal)


def run(args) -> int:
    from edge.settle import SettlementError, settle_case

    try:
        case = load_case(args.file)
    except FileNotFoundError:
        print(f"edge settle-case: no such file: {args.file}", file=sys.stderr)
        return EXIT_UNREADABLE
    except (OSError, UnicodeDecodeError) as exc:
        print(f"edge settle-case: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except json.JSONDecodeError as exc:
        print(f"edge settle-case: {args.file} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
              f"{exc.msg}); fix the file and run again", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        result = settle_case(case)
    except SettlementError as exc:
        # The auditors' contract (docs/engine.md): code, message and the field at fault, nothing more.
        error = {k: v for k, v in exc.to_dict().items() if k in ("code", "message", "field")}
        print(json.dumps({"error": error}, ensure_ascii=False))
        return EXIT_REFUSED
    if args.explain:
        print(result.explain())
    else:
        print(result.to_json())
    return 0
