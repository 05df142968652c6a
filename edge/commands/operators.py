"""``edge operator``: the clerks who log in at the counter page (edge/counter/operators.py).

    edge operator add ID --name NAME --roles settle,cancel [--password-stdin] [--state-dir DIR]
    edge operator list [--state-dir DIR]
    edge operator disable ID [--state-dir DIR]

The password or PIN is asked twice on the terminal (never an argument: arguments show in ``ps`` and the
shell's history), or read from one line of stdin with ``--password-stdin`` (scripts). Run it as the
counter's user on the state directory the daemon uses; the daemon sees a new operator at once and a
disabled one at once for anything that changes money (within half a minute for reads). Operators are
never deleted and ids never reused: entries name them.

Exit status: 0 done; 2 refused (the message says why: a bad id, name, role or password, an id that
exists, no such operator).
"""

from __future__ import annotations

import sys

from .journal import state_dir

EXIT_OK, EXIT_REFUSED = 0, 2


def register(sub) -> None:
    p = sub.add_parser("operator", help="the clerks who log in at the counter page (add, list, disable)",
                       description="Operators (clerks) of this counter: id (工号), name, roles among settle, cancel, "
                                   "payout, close_shift, and a scrypt-hashed password or PIN.")
    cmds = p.add_subparsers(dest="operator_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_REFUSED)[1])
    q = cmds.add_parser("add", help="add an operator (asks for the password or PIN)",
                        description="Add an operator. Roles: settle (presettle, settle, claim), cancel (撤销), "
                                    "payout (退款支付), close_shift (交班/日结).")
    q.add_argument("id", help="operator id (工号): 1-32 letters, digits, '_', '.', '-'")
    q.add_argument("--name", required=True, help="the name printed on receipts and the shift close")
    q.add_argument("--roles", required=True, help="comma list, e.g. settle,cancel")
    q.add_argument("--password-stdin", action="store_true", help="read the password or PIN from one line of stdin")
    q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
    q.set_defaults(func=run_add)
    q = cmds.add_parser("list", help="list the operators and their roles (never their passwords)")
    q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
    q.set_defaults(func=run_list)
    q = cmds.add_parser("disable", help="disable an operator (they can no longer log in; sessions end)")
    q.add_argument("id", help="operator id (工号)")
    q.add_argument("--state-dir", help="edge state directory (default $EDGE_STATE_DIR or ./var/edge)")
    q.set_defaults(func=run_disable)


def _secret(args) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("密码或PIN / password or PIN: ")
    if getpass.getpass("再输入一次 / again: ") != first:
        print("两次输入的密码不一致，未添加操作员", file=sys.stderr)
        return None
    return first


def run_add(args) -> int:
    from edge.counter.operators import OperatorError, OperatorStore

    secret = _secret(args)
    if secret is None:
        return EXIT_REFUSED
    store = OperatorStore.in_state_dir(state_dir(args))
    try:
        op = store.add(args.id, args.name, args.roles.split(","), secret)
    except OperatorError as exc:
        print(f"未添加操作员：{exc.zh} ({exc.message})", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        store.close()
    print(f"已添加操作员 {op.id} {op.name}，权限 {','.join(sorted(op.roles))}")
    return EXIT_OK


def run_list(args) -> int:
    from edge.counter.operators import OperatorStore

    store = OperatorStore.in_state_dir(state_dir(args))
    try:
        ops = store.list()
    finally:
        store.close()
    if not ops:
        print("没有操作员（添加：edge operator add ID --name 姓名 --roles settle）")
    for op in ops:
        print(f"{op.id}\t{op.name}\t{','.join(sorted(op.roles))}\t{'enabled' if op.enabled else 'DISABLED'}")
    return EXIT_OK


def run_disable(args) -> int:
    from edge.counter.operators import OperatorStore

    store = OperatorStore.in_state_dir(state_dir(args))
    try:
        done = store.disable(args.id)
    finally:
        store.close()
    if not done:
        print(f"没有工号为 {args.id} 的操作员", file=sys.stderr)
        return EXIT_REFUSED
    print(f"已停用操作员 {args.id}")
    return EXIT_OK
