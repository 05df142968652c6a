"""The centre's tables: ONE ordered list of named migrations, in the portable dialect of :mod:`.db`.

Every table of the centre is created here and nowhere else. :func:`migrate` applies the migrations
not yet recorded in ``schema_migrations``, in list order, each in its own transaction (statements and
the record commit together, so a failed migration leaves nothing behind). The store applies them
when it is opened (:meth:`sync.centre.store.Store.open`); ``centre migrate`` runs the same function as
an explicit deploy step, and :func:`pending` lets a process refuse to start on an older schema.

On PostgreSQL each migration takes a transaction-scoped advisory lock first, so two centre processes
starting together apply each migration once (the second waits, then finds it recorded).

Rules for a new migration: append it (never edit or reorder an applied one); give it the next
number; a statement that must differ per backend is a ``{"sqlite": ..., "postgres": ...}`` mapping.

Why the shape:
* ``entries`` keeps each journal entry as its exact signed bytes (``raw``) plus the columns
  reconciliation filters on; UNIQUE (device, seq) is the database's own guard against a fork slipping in.
* ``devices.high_water`` is the highest contiguous seq settled for the device (accepted, or rejected
  and recorded in ``rejections`` with ``slot = 1``); ``last_hash`` is the SHA-256 of the entry at
  ``high_water`` (NULL when that slot was a rejection: the next entry's ``prev`` cannot be checked and
  is marked ``chain_checked = 0``). Both change in the same transaction as the entries they cover.
* ``feed`` is the downlink: one row per message, ``device`` NULL = for every device (bundles). Its
  SERIAL id is the cursor a device asks "what changed since".
* ``recon_*`` hold reconciliation: the person ledger (persons, arrears, reviews, debts,
  contributions, the centre's own action journal), one outcome per reconciled entry, the claims
  queue, the reconciler's cursor and the online settlements already answered.
* ``reviewers`` / ``reviewer_sessions`` are the review page's accounts (only hashes are stored).
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import SQL, Database

# Reconciliation buckets: a person's entries all fall in one (crc32 of psn_no). Enough to spread a
# backlog over many workers; changing it needs a migration that re-buckets the queue.
BUCKETS = 256


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: tuple[SQL, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration("001-sync-core", (
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
    )),
    Migration("recon-001-ledger", (
        """CREATE TABLE recon_persons (
            psn_no TEXT PRIMARY KEY,
            certno TEXT,
            card_ids TEXT NOT NULL DEFAULT '[]',
            insutype TEXT NOT NULL,
            psn_type TEXT NOT NULL,
            chronic TEXT NOT NULL DEFAULT '[]',
            balc BIGINT NOT NULL,
            deductible_used BIGINT NOT NULL DEFAULT 0,
            fund_paid BIGINT NOT NULL DEFAULT 0,
            open_reviews INTEGER NOT NULL DEFAULT 0,
            updated_ms BIGINT NOT NULL)""",
        "CREATE INDEX recon_persons_certno ON recon_persons (certno)",
        """CREATE TABLE recon_arrears (
            id SERIAL_PK,
            psn_no TEXT NOT NULL,
            begin_date TEXT NOT NULL,
            end_date TEXT,
            cleared_ms BIGINT,
            cleared_by TEXT)""",
        "CREATE INDEX recon_arrears_psn ON recon_arrears (psn_no)",
        """CREATE TABLE recon_reviews (
            id SERIAL_PK,
            psn_no TEXT NOT NULL,
            device TEXT,
            seq BIGINT,
            code TEXT NOT NULL,
            reason TEXT NOT NULL,
            opened_ms BIGINT NOT NULL,
            closed_ms BIGINT,
            closed_by TEXT,
            note TEXT)""",
        "CREATE INDEX recon_reviews_psn ON recon_reviews (psn_no, closed_ms)",
        """CREATE TABLE recon_debts (
            id SERIAL_PK,
            psn_no TEXT NOT NULL,
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            amount BIGINT NOT NULL,
            opened_ms BIGINT NOT NULL,
            cleared_ms BIGINT)""",
        "CREATE INDEX recon_debts_psn ON recon_debts (psn_no, cleared_ms)",
        """CREATE TABLE recon_contributions (
            id SERIAL_PK,
            psn_no TEXT NOT NULL,
            amount BIGINT NOT NULL,
            debt_cleared BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            who TEXT NOT NULL)""",
        """CREATE TABLE recon_actions (
            id SERIAL_PK,
            at_ms BIGINT NOT NULL,
            who TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL)""",
        "CREATE INDEX recon_actions_target ON recon_actions (target)",
    )),
    Migration("recon-002-outcomes", (
        """CREATE TABLE recon_outcomes (
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            entry_id BIGINT NOT NULL,
            site TEXT NOT NULL,
            psn_no TEXT,
            kind TEXT NOT NULL,
            mode TEXT,
            date TEXT NOT NULL,
            time BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            codes TEXT NOT NULL,
            reason TEXT NOT NULL,
            differs TEXT NOT NULL,
            j_medfee BIGINT NOT NULL, j_fund BIGINT NOT NULL, j_acct BIGINT NOT NULL, j_cash BIGINT NOT NULL,
            j_dedc BIGINT NOT NULL,
            a_medfee BIGINT NOT NULL, a_fund BIGINT NOT NULL, a_acct BIGINT NOT NULL, a_cash BIGINT NOT NULL,
            a_dedc BIGINT NOT NULL,
            credit BIGINT NOT NULL, variance BIGINT NOT NULL, debt BIGINT NOT NULL,
            decided_ms BIGINT NOT NULL,
            PRIMARY KEY (device, seq))""",
        "CREATE INDEX recon_outcomes_site ON recon_outcomes (site, date)",
        "CREATE INDEX recon_outcomes_psn ON recon_outcomes (psn_no, time)",
        """CREATE TABLE recon_claims (
            claim_no TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            site TEXT NOT NULL,
            psn_no TEXT,
            certno TEXT,
            cause TEXT NOT NULL,
            detail TEXT NOT NULL,
            date TEXT NOT NULL,
            time BIGINT NOT NULL,
            medfee BIGINT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            waiting TEXT,
            amount BIGINT,
            split TEXT,
            decided_by TEXT,
            decided_ms BIGINT,
            note TEXT)""",
        "CREATE INDEX recon_claims_status ON recon_claims (status, time)",
        "CREATE INDEX recon_claims_psn ON recon_claims (psn_no)",
        """CREATE TABLE recon_cursor (
            name TEXT PRIMARY KEY,
            last_id BIGINT NOT NULL)""",
        """CREATE TABLE recon_online (
            device TEXT NOT NULL,
            req TEXT NOT NULL,
            psn_no TEXT NOT NULL,
            response TEXT NOT NULL,
            a_medfee BIGINT NOT NULL, a_fund BIGINT NOT NULL, a_acct BIGINT NOT NULL, a_cash BIGINT NOT NULL,
            a_dedc BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            PRIMARY KEY (device, req))""",
    )),
    Migration("recon-003-reviewers", (
        """CREATE TABLE reviewers (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            salt BLOB NOT NULL,
            pw_hash BLOB NOT NULL,
            created_ms BIGINT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1)""",
        """CREATE TABLE reviewer_sessions (
            token_hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL)""",
    )),
    # The batch's "already decided?" check reads outcomes by entry id.
    Migration("recon-004-outcomes-entry", ("CREATE INDEX recon_outcomes_entry ON recon_outcomes (entry_id)",)),
    # A reviewer's decision on a disputed settlement (accepted / rejected); NULL = not decided.
    Migration("recon-005-review-decision", ("ALTER TABLE recon_reviews ADD COLUMN decision TEXT",
                                            "CREATE INDEX recon_reviews_entry ON recon_reviews (device, seq)")),
    # The reconciler's cursor starts at 0 (was inserted lazily before the migrations were one list).
    Migration("recon-006-cursor-row", (
        "INSERT INTO recon_cursor (name, last_id) VALUES ('entries', 0) ON CONFLICT DO NOTHING",)),
    # Reconciliation as a work queue partitioned by person (the id cursor skipped entries whose
    # transaction committed after a higher id). Ingest enqueues each entry under its person's bucket;
    # a worker claims bucket rows (FOR UPDATE SKIP LOCKED) so one person is never on two workers.
    # Entries stored before this migration and not yet decided wait in bucket -1 (one worker at a time).
    Migration("scale-001-recon-queue", (
        """CREATE TABLE recon_buckets (bucket INTEGER PRIMARY KEY)""",
        f"""WITH RECURSIVE n(b) AS (SELECT -1 UNION ALL SELECT b + 1 FROM n WHERE b < {BUCKETS - 1})
            INSERT INTO recon_buckets (bucket) SELECT b FROM n""",
        """CREATE TABLE recon_queue (
            entry_id BIGINT PRIMARY KEY,
            bucket INTEGER NOT NULL)""",
        "CREATE INDEX recon_queue_bucket ON recon_queue (bucket, entry_id)",
        """INSERT INTO recon_queue (entry_id, bucket) SELECT e.id, -1 FROM entries e
            WHERE e.kind IN ('settlement', 'cancel', 'claim') AND NOT EXISTS
            (SELECT 1 FROM recon_outcomes o WHERE o.device = e.device AND o.seq = e.seq)""",
    )),
    # The downlink feed's cursor is a position given in commit order (ids are not): a row is written
    # with pos NULL and published after its transaction commits, under the feed_clock row's lock.
    # Rows already there keep their id as position, so a device's id cursor stays valid.
    Migration("scale-002-feed-position", (
        "ALTER TABLE feed ADD COLUMN pos BIGINT",
        "UPDATE feed SET pos = id",
        "CREATE UNIQUE INDEX feed_pos ON feed (pos)",
        "CREATE INDEX feed_device_pos ON feed (device, pos)",
        "CREATE INDEX feed_unpublished ON feed (id) WHERE pos IS NULL",
        "CREATE TABLE feed_clock (name TEXT PRIMARY KEY, last BIGINT NOT NULL)",
        "INSERT INTO feed_clock (name, last) SELECT 'feed', coalesce(max(id), 0) FROM feed",
    )),
    # Database-wide settings every worker must agree on (the bundle-signing key id).
    Migration("scale-003-settings", (
        "CREATE TABLE centre_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, set_ms BIGINT NOT NULL)",
    )),
    # The restore epoch devices follow (one row, 'current') and the history of restores (store/restore.py).
    Migration("restore-001-epoch", (
        "CREATE TABLE restore_epoch (name TEXT PRIMARY KEY, epoch TEXT NOT NULL, started_ms BIGINT NOT NULL)",
        """CREATE TABLE restores (
            id SERIAL_PK,
            epoch TEXT NOT NULL,
            restored_ms BIGINT NOT NULL,
            backup_created_ms BIGINT NOT NULL,
            backup_sha256 TEXT NOT NULL)""",
    )),
    # Cancels of reconciled settlements done at the centre (store/payouts.py): the reversed amounts.
    Migration("oncecharge-001-centre-cancels", (
        """CREATE TABLE centre_cancels (
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            site TEXT NOT NULL,
            psn_no TEXT NOT NULL,
            date TEXT NOT NULL,
            reason TEXT NOT NULL,
            who TEXT NOT NULL,
            r_medfee BIGINT NOT NULL, r_fund BIGINT NOT NULL, r_acct BIGINT NOT NULL, r_cash BIGINT NOT NULL,
            r_dedc BIGINT NOT NULL,
            credit BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            PRIMARY KEY (device, seq))""",
    )),
    # Year-to-date totals per policy year: the year the flat totals belong to, and the other
    # (year, accumulator) pairs as JSON rows [year, name, deductible_used, fund_paid].
    Migration("years-001-ledger-years", (
        "ALTER TABLE recon_persons ADD COLUMN ytd_year INTEGER",
        "ALTER TABLE recon_persons ADD COLUMN accs TEXT NOT NULL DEFAULT '[]'",
    )),
    # Money owed to patients and paid in cash at a counter (store/payouts.py): credits, approved claims.
    Migration("oncecharge-002-payouts", (
        """CREATE TABLE payouts (
            payout_no TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            device TEXT NOT NULL,
            seq BIGINT NOT NULL,
            site TEXT NOT NULL,
            psn_no TEXT NOT NULL,
            date TEXT NOT NULL,
            amount BIGINT NOT NULL,
            status TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            closed_ms BIGINT,
            note TEXT)""",
        "CREATE INDEX payouts_site ON payouts (site, date)",
        "CREATE INDEX payouts_ref ON payouts (device, seq)",
    )),
    # Every refused reviewer login (store/security.py): the journal operators read, and what throttles logins.
    Migration("security-001-login-failures", (
        """CREATE TABLE login_failures (
            id SERIAL_PK,
            at_ms BIGINT NOT NULL,
            name TEXT NOT NULL,
            client TEXT NOT NULL,
            reason TEXT NOT NULL)""",
        "CREATE INDEX login_failures_name ON login_failures (name, at_ms)",
        "CREATE INDEX login_failures_client ON login_failures (client, at_ms)",
    )),
    # Persons whose pending claims auto-approval re-checks next (store/recon.py): marked by the batch or
    # the operation that touched them, taken by the one elected worker. Append-only rows (no key on
    # psn_no), so a marking transaction never waits on the worker taking marks. '*' = every person;
    # one is written here so a database upgraded with claims pending re-checks them all once.
    Migration("scale-004-recheck", (
        """CREATE TABLE recon_recheck (
            id SERIAL_PK,
            psn_no TEXT NOT NULL,
            marked_ms BIGINT NOT NULL)""",
        "INSERT INTO recon_recheck (psn_no, marked_ms) VALUES ('*', 0)",
    )),
    # A req the counter asked about (online lookup) and was told had not settled: the counter then goes
    # offline or takes a full payment, so the same req arriving late (a slow link) never settles online.
    Migration("oncecharge-003-online-fence", (
        """CREATE TABLE recon_online_fence (
            device TEXT NOT NULL,
            req TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            PRIMARY KEY (device, req))""",
    )),
)


def applied(db: Database) -> list[str]:
    """Names of the migrations recorded in this database, in the order they were applied."""
    return db.migrations()


def pending(db: Database) -> list[str]:
    """Names of the migrations this code knows and this database has not applied yet (in order)."""
    done = set(applied(db))
    return [m.name for m in MIGRATIONS if m.name not in done]


def migrate(db: Database) -> list[str]:
    """Apply every pending migration in order, each in one transaction; returns the names applied now."""
    return [m.name for m in MIGRATIONS if db.migrate(m.name, m.statements)]
