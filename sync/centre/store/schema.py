"""The centre's tables, as named migrations in the portable dialect of :mod:`.db`.

Why the shape:
* ``entries`` keeps each journal entry as its exact signed bytes (``raw``) plus the columns
  reconciliation filters on; UNIQUE (device, seq) is the database's own guard against a fork slipping in.
* ``devices.high_water`` is the highest contiguous seq settled for the device (accepted, or rejected
  and recorded in ``rejections`` with ``slot = 1``); ``last_hash`` is the SHA-256 of the entry at
  ``high_water`` (NULL when that slot was a rejection: the next entry's ``prev`` cannot be checked and
  is marked ``chain_checked = 0``). Both change in the same transaction as the entries they cover.
* ``feed`` is the downlink: one row per message, ``device`` NULL = for every device (bundles). Its
  SERIAL id is the cursor a device asks "what changed since".
"""

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("001-sync-core", [
        """CREATE TABLE devices (
            device TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            pubkey BLOB NOT NULL,
            status TEXT NOT NULL DEFAULT 'active',
            enrolled_ms BIGINT NOT NULL,
            high_water BIGINT NOT NULL DEFAULT 0,
            last_hash BLOB,
            last_seen_ms BIGINT)""",
        "CREATE INDEX devices_site ON devices (site)",
        """CREATE TABLE enrol_tokens (
            token_hash TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL,
            used_by TEXT,
            used_ms BIGINT)""",
        """CREATE TABLE entries (
            id SERIAL_PK,
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            kind TEXT NOT NULL,
            time BIGINT NOT NULL,
            psn_no TEXT,
            req TEXT,
            hash BLOB NOT NULL,
            raw BLOB NOT NULL,
            chain_checked INTEGER NOT NULL DEFAULT 1,
            received_ms BIGINT NOT NULL,
            UNIQUE (device, seq))""",
        "CREATE INDEX entries_psn ON entries (psn_no, time)",
        """CREATE TABLE rejections (
            id SERIAL_PK,
            device TEXT NOT NULL,
            seq BIGINT,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            slot INTEGER NOT NULL DEFAULT 0,
            raw BLOB,
            received_ms BIGINT NOT NULL)""",
        "CREATE INDEX rejections_device ON rejections (device, seq)",
        """CREATE TABLE nonces (
            device TEXT NOT NULL,
            nonce TEXT NOT NULL,
            ts_ms BIGINT NOT NULL,
            PRIMARY KEY (device, nonce))""",
        "CREATE INDEX nonces_ts ON nonces (ts_ms)",
        """CREATE TABLE bundles (
            id SERIAL_PK,
            kind TEXT NOT NULL,
            version BIGINT NOT NULL,
            base BIGINT,
            hash TEXT NOT NULL UNIQUE,
            raw BLOB NOT NULL,
            created_ms BIGINT NOT NULL)""",
        "CREATE INDEX bundles_kind ON bundles (kind, version)",
        """CREATE TABLE feed (
            id SERIAL_PK,
            device TEXT,
            kind TEXT NOT NULL,
            topic TEXT,
            full_bundle INTEGER NOT NULL DEFAULT 0,
            payload BLOB NOT NULL,
            created_ms BIGINT NOT NULL)""",
        "CREATE INDEX feed_device ON feed (device, id)",
    ]),
]


def apply(db) -> None:
    for name, statements in MIGRATIONS:
        db.migrate(name, statements)
