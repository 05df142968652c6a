"""The centre's store: the only code of the centre that speaks SQL.

``open_store(url)`` opens SQLite (a path or ``sqlite:///path``; the embedded default) or PostgreSQL
(``postgresql://...``; production) and applies every pending migration of the one ordered list in
:mod:`.schema` (``schema.pending(db)`` / ``schema.migrate(db)`` for an explicit deploy step). One
implementation serves both backends: the SQL is written once in the portable dialect of :mod:`.db`.

Layout: :mod:`.store` (devices, enrolment, entries, bundles, downlink feed) and one repository per
area, reached as attributes of the :class:`Store`: ``ledger`` (:mod:`.ledger`), ``recon``
(:mod:`.recon`), ``claims`` (:mod:`.claims`), ``accounts`` (:mod:`.accounts`). Code outside this
package gets the store (or a repository) and never writes SQL; ``tests/test_sql_owner.py`` enforces it.
"""

from .db import Database, open_db
from .store import BatchOutcome, DeviceInfo, Store, now_ms, open_store

__all__ = ["Database", "open_db", "BatchOutcome", "DeviceInfo", "Store", "now_ms", "open_store"]
