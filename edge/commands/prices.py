"""``edge prices``: the site's own price list (what the counter page fills in; edge/counter/prices.py).

    edge prices import FILE.csv [--state-dir DIR]   replace the list (columns med_list_codg, pric in yuan)
    edge prices count [--state-dir DIR]             how many items have a price

Exit status: 0 done; 2 the file cannot be used (the message names the line; the old list stays).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .journal import state_dir

EXIT_OK, EXIT_UNUSABLE = 0, 2


def register(sub) -> None:
    p = sub.add_parser("prices", help="the site's own price list (filled in on the counter page)",
                       description="What this site charges per item, kept locally and filled in by the counter page.")
    cmds = p.add_subparsers(dest="prices_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_UNUSABLE)[1])
    q = cmds.add_parser("import", help="replace the price list from a CSV file",
                        description="Replace the price list from a CSV with columns med_list_codg (or code) and "
                                    "pric (yuan, e.g. 12.80). One transaction: a bad row changes nothing.")
    q.add_argument("file", type=Path, help="the CSV file (UTF-8)")
    q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
    q.set_defaults(func=run_import)
    q = cmds.add_parser("count", help="how many items have a price")
    q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
    q.set_defaults(func=run_count)


def run_import(args) -> int:
    from edge.counter.prices import PriceError, PriceList, parse_csv

    try:
        with open(args.file, encoding="utf-8-sig", newline="") as f:
            prices = parse_csv(f)
    except OSError as exc:
        print(f"无法读取价格表 {args.file}：{exc.strerror}", file=sys.stderr)
        return EXIT_UNUSABLE
    except PriceError as exc:
        print(f"价格表未导入（原价格表不变）：{exc.zh}", file=sys.stderr)
        return EXIT_UNUSABLE
    n = PriceList.in_state_dir(state_dir(args)).replace(prices)
    print(f"已导入 {n} 个项目的单价")
    return EXIT_OK


def run_count(args) -> int:
    from edge.counter.prices import PriceList

    n = PriceList.in_state_dir(state_dir(args)).count()
    print(f"价格表中有 {n} 个项目" if n else "价格表为空（柜台页面需手工输入单价）")
    return EXIT_OK
