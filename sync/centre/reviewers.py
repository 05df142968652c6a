"""Reviewer accounts and sessions for the centre's review page and API.

Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, n=2**14, r=8, p=1, 16-byte salt) and
compared in constant time. A login creates a random session token (32 bytes, URL-safe); only its
SHA-256 is stored, so a copy of the database does not let anyone log in. Sessions expire after
``SESSION_MS`` (8 hours: one working day).

Roles: ``reviewer`` may read and decide claims; ``auditor`` may read the queue and the reports but
not decide. The web layer checks the role of every request (:func:`authorize`).

Errors: the ``AccountError`` branch of :mod:`sync.centre.errors` (``NotLoggedIn`` 401, ``BadLogin`` 401,
``WrongRole`` 403, ``BadAccount``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sync.centre.errors import BadAccount, BadLogin, NotLoggedIn, WrongRole

ROLES = ("reviewer", "auditor")
SESSION_MS = 8 * 3_600_000
_N, _R, _P = 2 ** 14, 8, 1





def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def add(db, name: str, password: str, role: str = "reviewer", *, now: int) -> dict:
    if role not in ROLES:
        raise BadAccount(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name or not name.strip() or len(name) > 64:
        raise BadAccount("a reviewer name is 1-64 characters")
    if len(password) < 8:
        raise BadAccount("a password has at least 8 characters")
    from sync.centre.ledger import record_action

    salt = secrets.token_bytes(16)
    with db.transaction():
        if db.query_one("SELECT name FROM reviewers WHERE name = ?", (name,)):
            raise BadAccount(f"reviewer {name} already exists")
        db.execute("INSERT INTO reviewers (name, role, salt, pw_hash, created_ms) VALUES (?, ?, ?, ?, ?)",
                   (name, role, salt, _hash(password, salt), now))
        record_action(db, "operator", "add_reviewer", f"reviewer:{name}", {"role": role}, now=now)
    return {"name": name, "role": role}


def login(db, name: str, password: str, *, now: int) -> str:
    """Check the password; return a new session token."""
    row = db.query_one("SELECT * FROM reviewers WHERE name = ? AND active = 1", (name,))
    # Hash even for an unknown name so the answer takes as long either way.
    salt = bytes(row["salt"]) if row else b"\0" * 16
    ok = hmac.compare_digest(_hash(password, salt), bytes(row["pw_hash"]) if row else b"\1" * 32)
    if row is None or not ok:
        raise BadLogin("unknown reviewer or wrong password")
    from sync.centre.ledger import record_action

    token = secrets.token_urlsafe(32)
    with db.transaction():
        db.execute("INSERT INTO reviewer_sessions (token_hash, name, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
                   (_token_hash(token), name, now, now + SESSION_MS))
        record_action(db, name, "login", f"reviewer:{name}", {"role": row["role"]}, now=now)
    return token


def logout(db, token: str) -> None:
    db.execute("DELETE FROM reviewer_sessions WHERE token_hash = ?", (_token_hash(token),))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session(db, token: str | None, *, now: int) -> dict:
    """The account behind a session token: {"name", "role"}; raises NotLoggedIn."""
    if not token:
        raise NotLoggedIn("log in first (POST /v1/review/login, or the form at /review)")
    row = db.query_one("SELECT r.name, r.role, s.expires_ms FROM reviewer_sessions s JOIN reviewers r "
                       "ON r.name = s.name WHERE s.token_hash = ? AND r.active = 1", (_token_hash(token),))
    if row is None or row["expires_ms"] < now:
        raise NotLoggedIn("the session is unknown or has expired: log in again")
    return {"name": row["name"], "role": row["role"]}


def authorize(account: dict, *roles: str) -> dict:
    if account["role"] not in roles:
        raise WrongRole(f"{account['name']} is an {account['role']}; this needs the role "
                        f"{' or '.join(roles)}")
    return account
