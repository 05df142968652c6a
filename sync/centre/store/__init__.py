"""The centre's store: a portable database layer (:mod:`.db`) and the store API on top of it."""

from .db import Database, open_db

__all__ = ["Database", "open_db"]
