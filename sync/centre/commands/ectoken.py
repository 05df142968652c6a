"""`centre ec-token --psn-no X [--area 330300]`: print a 医保电子凭证 test token for a person (demo and
tests; the centre stands in for the national decoder, sync/centre/ectoken.py)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from sync.centre.commands.core import _common

    p = sub.add_parser("ec-token", help="print an e-voucher (医保电子凭证) test token for a person",
                       description="Issue a test ecToken the counter's 1101 (mdtrt_cert_type 01) resolves online.")
    _common(p)
    p.add_argument("--psn-no", required=True, help="the person's number (psn_no)")
    p.add_argument("--area", default="330300", help="insured area code, 6 digits (default 330300)")
    p.set_defaults(func=cmd_ec_token)


def cmd_ec_token(args) -> int:
    from sync.centre.commands.review import _run
    from sync.centre.ectoken import TokenError, decoder_key, issue

    def show(store) -> int:
        # The decoder key lives in the centre's database (created on first use), as the route reads it.
        try:
            print(issue(decoder_key(store), args.psn_no, args.area))
        except TokenError as exc:
            print(f"ec-token: {exc}", file=sys.stderr)
            return 1
        return 0

    return _run(args, show)
