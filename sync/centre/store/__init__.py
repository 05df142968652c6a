"""The centre's store: a portable database layer (:mod:`.db`) and the store API on top (:mod:`.store`).

``open_store(url)`` opens SQLite (a path or ``sqlite:///path``; the embedded default) or PostgreSQL
(``postgresql://...``; production) and applies the migrations in :mod:`.schema`. One implementation
serves both backends: the SQL is written once in the portable dialect of :mod:`.db`.
"""

from .db import Database, open_db
from .store import BatchOutcome, DeviceInfo, Store, StoreAPI, now_ms, open_store

__all__ = ["Database", "open_db", "BatchOutcome", "DeviceInfo", "Store", "StoreAPI", "now_ms", "open_store"]
