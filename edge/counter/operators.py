"""The counter's operators (clerks): who may log in at the counter page and what each may do.

``operators.db`` in the state directory, one small table, written by ``edge operator add/list/disable``
(edge/commands/operators.py) and read by the counter API's login (edge/counter/auth.py)::

    id          TEXT PRIMARY KEY   the clerk's number (工号): 1..32 of [A-Za-z0-9_.-]
    name        TEXT               printed on receipts and the shift close (1..40 characters)
    roles       TEXT               comma list, a subset of ROLES
    secret      TEXT               scrypt$<n>$<r>$<p>$<salt b64>$<hash b64> of the password or PIN
                                   (the file is 0600 whatever the umask: hashes of 4-digit PINs fall offline)
    enabled     INTEGER            0 once disabled (never deleted: old entries name this id)

Roles: ``settle`` (presettle, settle, claim), ``cancel`` (撤销), ``payout`` (退款支付, cash handed to a
patient), ``close_shift`` (交班/日结). An operator is never deleted and an id never reused, so an
entry's ``operator.id`` always means one person. Passwords are hashed with scrypt (n=2^14, r=8,
p=1, a 16-byte salt): about 16 MiB and tens of milliseconds per try, on purpose; the API verifies
in a worker thread and throttles wrong tries (edge/counter/auth.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edge.storage import atomic, migrate

from .errors import CounterError

FILE = "operators.db"
ROLES = ("settle", "cancel", "payout", "close_shift")
ROLE_ZH = {"settle": "结算", "cancel": "撤销结算", "payout": "支付退款", "close_shift": "交班/日结"}
ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")      # the whole id (fullmatch): "^...$" took "op1\n"
MAX_NAME = 40
RESERVED = frozenset({"HIS"})   # ids no clerk may take (upper-cased): the installation token's operator
MIN_SECRET = 4                 # a 4-digit PIN at least; the login throttle makes guessing slow
MAX_SECRET = 256
SCRYPT = (2**14, 8, 1)
_MIGRATIONS = [("0001_operators", lambda c: c.execute(
    "CREATE TABLE IF NOT EXISTS operators (id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, "
    "secret TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, created_ms INTEGER NOT NULL, "
    "updated_ms INTEGER NOT NULL) WITHOUT ROWID"))]


class OperatorError(CounterError):
    """An operator that cannot be added or changed as asked (the message says why)."""

    code = "invalid_operator"
    zh = "操作员信息不正确"
    status = 422


class NotAllowed(CounterError):
    """The operator lacks the role the action needs (403 ``not_allowed``)."""

    code = "not_allowed"
    zh = "您没有此操作的权限"
    status = 403


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    roles: frozenset[str]
    enabled: bool = True

    def who(self) -> dict[str, str]:
        """What an entry body and a receipt carry (``operator`` in docs/entries.md)."""
        return {"id": self.id, "name": self.name}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "roles": sorted(self.roles)}


def require(operator: Any, role: str) -> None:
    """Refuse (403 ``not_allowed``) an operator without ``role``; None is the system itself (every role:
    the library called directly, as the tests and the harness do)."""
    if operator is None or role in getattr(operator, "roles", ()):
        return
    raise NotAllowed(f"operator {getattr(operator, 'id', '?')} does not hold the {role} role",
                     zh=f"您没有{ROLE_ZH.get(role, role)}的权限，请由有权限的操作员办理", role=role)


def hash_secret(secret: str) -> str:
    n, r, p = SCRYPT
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, UnicodeError):
        return False
    return hmac.compare_digest(got, want)


# A hash to verify unknown ids against, so an unknown id costs the same time as a wrong password.
_DUMMY = hash_secret(secrets.token_hex(8))


def _roles(roles: Iterable[str]) -> frozenset[str]:
    out = frozenset(r.strip() for r in roles if r.strip())
    unknown = out - set(ROLES)
    if unknown or not out:
        raise OperatorError(f"roles must be some of {', '.join(ROLES)} (got {', '.join(sorted(unknown)) or 'none'})",
                            zh="权限应为 settle、cancel、payout、close_shift 中的一个或多个", field="roles")
    return out


def _check_new(op_id: str, name: str, secret: str) -> None:
    if not isinstance(op_id, str) or not ID_RE.fullmatch(op_id):
        raise OperatorError("an operator id is 1 to 32 letters, digits, '_', '.' or '-'",
                            zh="工号应为1至32位字母、数字或 _ . -", field="id")
    if op_id.upper() in RESERVED:
        # The installation token acts as operator HIS (edge/counter/auth.py): a clerk under that id would
        # be written on entries and the shift close as the HIS.
        raise OperatorError(f"operator id {op_id} is reserved for the HIS's installation token",
                            zh=f"工号 {op_id} 保留给医院信息系统（本机接口令牌），请换一个工号", field="id")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise OperatorError(f"a name is 1 to {MAX_NAME} printable characters", zh="姓名应为1至40个字符", field="name")
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise OperatorError(f"a password or PIN is {MIN_SECRET} to {MAX_SECRET} characters",
                            zh="密码应为4位以上", field="password")


class OperatorStore:
    """The operators table (one SQLite file; a lock, since the API reads it from worker threads)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> "OperatorStore":
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _private(Path(path))
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn, _MIGRATIONS)
        return cls(conn)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "OperatorStore":
        return cls.open(Path(state_dir) / FILE)

    def close(self) -> None:
        self._conn.close()

    def add(self, op_id: str, name: str, roles: Iterable[str], secret: str) -> Operator:
        _check_new(op_id, name, secret)
        granted = _roles(roles)
        hashed = hash_secret(secret)
        now = time.time_ns() // 1_000_000
        with self._lock, atomic(self._conn) as c:
            if c.execute("SELECT 1 FROM operators WHERE id = ?", (op_id,)).fetchone() is not None:
                raise OperatorError(f"operator {op_id} exists already (ids are never reused)",
                                    zh=f"工号 {op_id} 已存在（工号不可重复使用）", field="id")
            c.execute("INSERT INTO operators (id, name, roles, secret, enabled, created_ms, updated_ms) "
                      "VALUES (?, ?, ?, ?, 1, ?, ?)", (op_id, name.strip(), ",".join(sorted(granted)), hashed, now, now))
        return Operator(op_id, name.strip(), granted)

    def disable(self, op_id: str) -> bool:
        """Disable ``op_id`` (its sessions end at their next check); False when there is no such operator."""
        with self._lock, atomic(self._conn) as c:
            cur = c.execute("UPDATE operators SET enabled = 0, updated_ms = ? WHERE id = ?",
                            (time.time_ns() // 1_000_000, op_id))
            return cur.rowcount == 1

    def get(self, op_id: str) -> Operator | None:
        with self._lock:
            row = self._conn.execute("SELECT id, name, roles, enabled FROM operators WHERE id = ?", (op_id,)).fetchone()
        return None if row is None else _operator(row)

    def list(self) -> list[Operator]:
        with self._lock:
            rows = self._conn.execute("SELECT id, name, roles, enabled FROM operators ORDER BY id").fetchall()
        return [_operator(r) for r in rows]

    def verify(self, op_id: str, secret: str) -> Operator | None:
        """The enabled operator ``op_id`` when ``secret`` is theirs, else None (same cost either way)."""
        with self._lock:
            row = self._conn.execute("SELECT id, name, roles, enabled, secret FROM operators WHERE id = ?",
                                     (op_id,)).fetchone() if isinstance(op_id, str) else None
        good = check_secret(secret, row[4] if row is not None else _DUMMY) if isinstance(secret, str) else False
        if row is None or not good or not row[3]:
            return None
        return _operator(row[:4])


def _private(path: Path) -> None:
    """The file of password hashes readable by the counter's user only (0600), whoever's umask made it:
    beside a state directory the HIS's group may traverse, a readable file would let a four-digit PIN be
    tried offline, where no login throttle applies. A looser file made before is tightened."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        owner = path.parent.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:    # root ran `edge operator add`: the daemon's user owns it
            os.chown(path, owner.st_uid, owner.st_gid)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)


def _operator(row) -> Operator:
    return Operator(row[0], row[1], frozenset(r for r in row[2].split(",") if r), bool(row[3]))
