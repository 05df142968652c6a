"""Reviewer accounts and sessions: the repository of the ``reviewers`` and ``reviewer_sessions`` tables.

Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, n=2**14, r=8, p=1, 16-byte salt) and
compared in constant time. A login creates a random session token (32 bytes, URL-safe); only its
SHA-256 is stored, so a copy of the database does not let anyone log in. Sessions expire after
``SESSION_MS`` (8 hours: one working day). Roles and their checks live in :mod:`sync.centre.reviewers`.
The centre reaches this as ``store.accounts``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sync.centre.errors import BadAccount, BadLogin, NotLoggedIn

from .db import Database
from .ledger import Ledgers

ROLES = ("reviewer", "auditor")
SESSION_MS = 8 * 3_600_000
_N, _R, _P = 2 ** 14, 8, 1


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Accounts:
    def __init__(self, db: Database, ledger: Ledgers) -> None:
        self.db = db
        self._ledger = ledger   # every account change is recorded in the centre's action journal

    def add(self, name: str, password: str, role: str = "reviewer", *, now: int) -> dict:
        if role not in ROLES:
            raise BadAccount(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not name or not name.strip() or len(name) > 64:
            raise BadAccount("a reviewer name is 1-64 characters")
        if len(password) < 8:
            raise BadAccount("a password has at least 8 characters")
        salt = secrets.token_bytes(16)
        with self.db.transaction():
            if self.db.query_one("SELECT name FROM reviewers WHERE name = ?", (name,)):
                raise BadAccount(f"reviewer {name} already exists")
            self.db.execute("INSERT INTO reviewers (name, role, salt, pw_hash, created_ms) VALUES (?, ?, ?, ?, ?)",
                            (name, role, salt, _hash(password, salt), now))
            self._ledger.record_action("operator", "add_reviewer", f"reviewer:{name}", {"role": role}, now=now)
        return {"name": name, "role": role}

    def login(self, name: str, password: str, *, now: int) -> str:
        """Check the password; return a new session token."""
        row = self.db.query_one("SELECT * FROM reviewers WHERE name = ? AND active = 1", (name,))
        # Hash even for an unknown name so the answer takes as long either way.
        salt = bytes(row["salt"]) if row else b"\0" * 16
        ok = hmac.compare_digest(_hash(password, salt), bytes(row["pw_hash"]) if row else b"\1" * 32)
        if row is None or not ok:
            raise BadLogin("unknown reviewer or wrong password")
        token = secrets.token_urlsafe(32)
        with self.db.transaction():
            self.db.execute("INSERT INTO reviewer_sessions (token_hash, name, created_ms, expires_ms) "
                            "VALUES (?, ?, ?, ?)", (_token_hash(token), name, now, now + SESSION_MS))
            self._ledger.record_action(name, "login", f"reviewer:{name}", {"role": row["role"]}, now=now)
        return token

    def logout(self, token: str) -> None:
        self.db.execute("DELETE FROM reviewer_sessions WHERE token_hash = ?", (_token_hash(token),))

    def session(self, token: str | None, *, now: int) -> dict:
        """The account behind a session token: {"name", "role"}; raises NotLoggedIn."""
        if not token:
            raise NotLoggedIn("log in first (POST /v1/review/login, or the form at /review)")
        row = self.db.query_one("SELECT r.name, r.role, s.expires_ms FROM reviewer_sessions s JOIN reviewers r "
                                "ON r.name = s.name WHERE s.token_hash = ? AND r.active = 1", (_token_hash(token),))
        if row is None or row["expires_ms"] < now:
            raise NotLoggedIn("the session is unknown or has expired: log in again")
        return {"name": row["name"], "role": row["role"]}
