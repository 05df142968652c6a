"""Reviewer roles for the centre's review page and API.

Roles: ``reviewer`` may read and decide claims; ``auditor`` may read the queue and the reports but
not decide. The web layer checks the role of every request (:func:`authorize`). Accounts and
sessions (scrypt hashes, session tokens stored as SHA-256) are kept by
:class:`sync.centre.store.accounts.Accounts` (``store.accounts``).

Errors: the ``AccountError`` branch of :mod:`sync.centre.errors` (``NotLoggedIn`` 401, ``BadLogin`` 401,
``WrongRole`` 403, ``BadAccount``).
"""

from __future__ import annotations

from sync.centre.errors import BadAccount, BadLogin, NotLoggedIn, WrongRole
from sync.centre.store.accounts import ROLES, SESSION_MS

__all__ = ["ROLES", "SESSION_MS", "authorize", "BadAccount", "BadLogin", "NotLoggedIn", "WrongRole"]


def authorize(account: dict, *roles: str) -> dict:
    if account["role"] not in roles:
        raise WrongRole(f"{account['name']} is an {account['role']}; this needs the role "
                        f"{' or '.join(roles)}")
    return account
