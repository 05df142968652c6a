"""Failed reviewer logins: the repository of the ``login_failures`` table (``store.security``).

Every refused login leaves a row (time, the name tried, the client address, the reason), so an
operator can see a password being guessed; the review desk counts the recent rows to throttle
logins (:mod:`sync.centre.webauth`). Names and addresses are what the caller sent, cut to 64 chars.
"""

from __future__ import annotations

from .db import Database


class Security:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_failure(self, name: str, client: str, reason: str, *, now: int) -> None:
        self.db.execute("INSERT INTO login_failures (at_ms, name, client, reason) VALUES (?, ?, ?, ?)",
                        (now, name[:64], client[:64], reason[:32]))

    def recent_failures(self, name: str, client: str, *, since: int) -> tuple[int, int]:
        """Wrong passwords and unknown names since ``since``: (for this name, from this client). Refusals
        by the throttle itself do not count, so a lock ends when its window passes whatever is tried."""
        by_name = self.db.query_one("SELECT COUNT(*) AS n FROM login_failures WHERE name = ? AND at_ms >= ? "
                                    "AND reason <> 'throttled'", (name[:64], since))
        by_client = self.db.query_one("SELECT COUNT(*) AS n FROM login_failures WHERE client = ? AND at_ms >= ? "
                                      "AND reason <> 'throttled'", (client[:64], since))
        return int(by_name["n"] if by_name else 0), int(by_client["n"] if by_client else 0)

    def failures(self) -> list[dict]:
        """The journal of failed logins, oldest first (for operators and tests)."""
        return self.db.query("SELECT at_ms, name, client, reason FROM login_failures ORDER BY id")
