"""The sync protocol, sans-I/O (like h11): messages, batches, acks, cursors, result codes, states.

Nothing here touches a socket or a clock. The edge's uplink (``edge.uplink``) and the centre's HTTP
handlers (``sync.centre.app``) are thin drivers: they move bytes and call these functions.

Messages (CBOR maps, field ``t`` names the type; framed by :mod:`sync.wire`; schema in
``firmware-interfaces/sync.cddl``)::

    enrol          edge -> centre  {t, token, pubkey: 32 bytes, sig: Ed25519 over ENROL_DOMAIN+token+pubkey}
    enrolled       centre -> edge  {t, device, site, bundle_key: 32 bytes, bundle_key_id}
    upload         edge -> centre  {t, device, entries: [[seq, entry bytes], ...]}
    upload_result  centre -> edge  {t, ack, results: [[seq, status, code|null, message|null], ...]}
    feed           edge -> centre  {t, cursor, limit}
    feed_page      centre -> edge  {t, messages: [{kind, id, payload}], cursor, more, high_water, ? epoch, ? head}
    error          centre -> edge  {t, code, message, retryable}

``ack`` is the highest contiguous seq the centre durably holds for the device (accepted or rejected
and recorded). ``high_water`` in a feed page is the same number: a device learns it on every poll,
even with nothing to send, so it notices a centre restored from an older backup. ``epoch`` (the
centre's restore epoch, a new random id at each ``centre restore``) and ``head`` (the feed's newest
id) tell the device its downlink position no longer means anything: a new epoch, or a head below the
cursor, and :meth:`UplinkCore.feed_page` answers ``resync`` (read the feed again from 0; bundles are
deduplicated by version and hash, notices by id).

Uplink state machine (one request in flight; a failure returns to IDLE and grows the backoff)::

    IDLE ──start_upload──▶ UPLOADING ──upload_result──▶ IDLE
    IDLE ──start_feed────▶ FETCHING  ──feed_page──────▶ IDLE
    UPLOADING/FETCHING ──failed──▶ IDLE

An event not in the table raises :class:`IllegalEvent` and changes nothing.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from sync.errors import MessageError, ProtocolError

PROTOCOL_VERSION = 1
ENROL_DOMAIN = b"settle-enrol-v1\n"
BATCH_MAX_ENTRIES = 500
BATCH_MAX_BYTES = 256_000
FEED_LIMIT = 100

ACCEPTED, DUPLICATE, REJECTED, DEFERRED = "accepted", "duplicate", "rejected", "deferred"
STATUSES = (ACCEPTED, DUPLICATE, REJECTED, DEFERRED)
# Per-entry codes (REJECTED: permanent, the edge quarantines; DEFERRED: re-send later).
ENTRY_CODES = ("malformed", "seq_mismatch", "wrong_device", "bad_signature", "fork", "broken_chain", "gap")


class IllegalEvent(ProtocolError):
    code = "illegal_event"


def _need(msg: Any, key: str, typ, t: str):
    if not isinstance(msg, dict) or key not in msg:
        raise MessageError(f"{t} message lacks {key!r}")
    v = msg[key]
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise MessageError(f"{t}.{key} must be an integer")
    if typ is not int and not isinstance(v, typ):
        raise MessageError(f"{t}.{key} has the wrong type ({type(v).__name__})")
    return v


def _expect(msg: Any, t: str) -> dict:
    if not isinstance(msg, dict):
        raise MessageError(f"expected a {t} message, got {type(msg).__name__}")
    if msg.get("t") == "error":
        raise error_from_message(msg)
    if msg.get("t") != t:
        raise MessageError(f"expected a {t} message, got {msg.get('t')!r}")
    return msg


# -- messages ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrol:
    token: str
    pubkey: bytes
    sig: bytes

    @staticmethod
    def signed_bytes(token: str, pubkey: bytes) -> bytes:
        return ENROL_DOMAIN + token.encode("utf-8") + b"\n" + pubkey

    def to_msg(self) -> dict:
        return {"t": "enrol", "token": self.token, "pubkey": self.pubkey, "sig": self.sig}

    @classmethod
    def from_msg(cls, msg: Any) -> "Enrol":
        _expect(msg, "enrol")
        e = cls(_need(msg, "token", str, "enrol"), _need(msg, "pubkey", bytes, "enrol"), _need(msg, "sig", bytes, "enrol"))
        if len(e.pubkey) != 32 or len(e.sig) != 64:
            raise MessageError("enrol.pubkey must be 32 bytes and enrol.sig 64 bytes (Ed25519)")
        return e


@dataclass(frozen=True)
class Enrolled:
    device: str
    site: str
    bundle_key: bytes
    bundle_key_id: str

    def to_msg(self) -> dict:
        return {"t": "enrolled", "device": self.device, "site": self.site, "bundle_key": self.bundle_key,
                "bundle_key_id": self.bundle_key_id}

    @classmethod
    def from_msg(cls, msg: Any) -> "Enrolled":
        _expect(msg, "enrolled")
        return cls(_need(msg, "device", str, "enrolled"), _need(msg, "site", str, "enrolled"),
                   _need(msg, "bundle_key", bytes, "enrolled"), _need(msg, "bundle_key_id", str, "enrolled"))


@dataclass(frozen=True)
class Upload:
    device: str
    entries: list[tuple[int, bytes]]

    def to_msg(self) -> dict:
        return {"t": "upload", "device": self.device, "entries": [[s, r] for s, r in self.entries]}

    @classmethod
    def from_msg(cls, msg: Any, *, max_entries: int = BATCH_MAX_ENTRIES * 4) -> "Upload":
        _expect(msg, "upload")
        device = _need(msg, "device", str, "upload")
        raw = _need(msg, "entries", list, "upload")
        if len(raw) > max_entries:
            raise MessageError(f"upload has {len(raw)} entries; at most {max_entries} per batch")
        entries = []
        for i, item in enumerate(raw):
            if (not isinstance(item, list) or len(item) != 2 or isinstance(item[0], bool)
                    or not isinstance(item[0], int) or item[0] < 1 or not isinstance(item[1], bytes)):
                raise MessageError(f"upload.entries[{i}] must be [seq ≥ 1, entry bytes]")
            entries.append((item[0], item[1]))
        return cls(device, entries)


@dataclass(frozen=True)
class EntryResult:
    seq: int
    status: str
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class UploadResult:
    ack: int
    results: list[EntryResult]

    def to_msg(self) -> dict:
        return {"t": "upload_result", "ack": self.ack,
                "results": [[r.seq, r.status, r.code, r.message] for r in self.results]}

    @classmethod
    def from_msg(cls, msg: Any) -> "UploadResult":
        _expect(msg, "upload_result")
        ack = _need(msg, "ack", int, "upload_result")
        out = []
        for i, r in enumerate(_need(msg, "results", list, "upload_result")):
            if not isinstance(r, list) or len(r) != 4 or r[1] not in STATUSES:
                raise MessageError(f"upload_result.results[{i}] is malformed")
            out.append(EntryResult(r[0], r[1], r[2], r[3]))
        return cls(ack, out)


@dataclass(frozen=True)
class FeedRequest:
    cursor: int
    limit: int = FEED_LIMIT

    def to_msg(self) -> dict:
        return {"t": "feed", "cursor": self.cursor, "limit": self.limit}

    @classmethod
    def from_msg(cls, msg: Any) -> "FeedRequest":
        _expect(msg, "feed")
        cursor, limit = _need(msg, "cursor", int, "feed"), _need(msg, "limit", int, "feed")
        if cursor < 0 or not 1 <= limit <= 1000:
            raise MessageError("feed.cursor must be ≥ 0 and feed.limit 1..1000")
        return cls(cursor, limit)


@dataclass(frozen=True)
class FeedPage:
    messages: list[dict]
    cursor: int
    more: bool
    high_water: int
    epoch: str | None = None      # the centre's restore epoch (absent from older centres)
    head: int | None = None       # the feed's newest id

    def to_msg(self) -> dict:
        msg = {"t": "feed_page", "messages": self.messages, "cursor": self.cursor, "more": self.more,
               "high_water": self.high_water}
        if self.epoch is not None:
            msg["epoch"] = self.epoch
        if self.head is not None:
            msg["head"] = self.head
        return msg

    @classmethod
    def from_msg(cls, msg: Any) -> "FeedPage":
        _expect(msg, "feed_page")
        msgs = _need(msg, "messages", list, "feed_page")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("kind") not in ("bundle", "outcome", "reimbursement") \
                    or not isinstance(m.get("id"), int):
                raise MessageError(f"feed_page.messages[{i}] must be {{kind, id, payload}}")
        epoch = _need(msg, "epoch", str, "feed_page") if "epoch" in msg else None
        head = _need(msg, "head", int, "feed_page") if "head" in msg else None
        return cls(msgs, _need(msg, "cursor", int, "feed_page"), bool(msg.get("more")),
                   _need(msg, "high_water", int, "feed_page"), epoch, head)


def error_message(exc) -> dict:
    return {"t": "error", "code": exc.code, "message": exc.message, "retryable": bool(exc.retryable)}


def error_from_message(msg: dict, status: int = 400):
    from sync.errors import CentreRefused

    return CentreRefused(str(msg.get("message") or "the centre refused the request"),
                         code=str(msg.get("code") or "centre_refused"), retryable=bool(msg.get("retryable")),
                         status=status)


# -- batches ---------------------------------------------------------------------------------------
def make_batch(entries: Sequence, *, max_entries: int = BATCH_MAX_ENTRIES,
               max_bytes: int = BATCH_MAX_BYTES) -> list:
    """The longest prefix of ``entries`` (objects with ``.seq`` and ``.raw``) within both bounds;
    always at least one entry, so a single large entry still goes."""
    out: list = []
    size = 0
    for e in entries[:max_entries]:
        if out and size + len(e.raw) > max_bytes:
            break
        out.append(e)
        size += len(e.raw)
    return out


# -- backoff --------------------------------------------------------------------------------------
@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits a uniform random time
    in [base/2, min(cap, base * 2**n)]. Never gives up: the caller retries forever."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        high = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return self.rng.uniform(min(self.base / 2, high), high)

    def reset(self) -> None:
        self.failures = 0


# -- the uplink's state machine ---------------------------------------------------------------------
class State(enum.Enum):
    IDLE = "idle"
    UPLOADING = "uploading"
    FETCHING = "fetching"


_TRANSITIONS = {
    (State.IDLE, "start_upload"): State.UPLOADING,
    (State.UPLOADING, "upload_result"): State.IDLE,
    (State.UPLOADING, "failed"): State.IDLE,
    (State.IDLE, "start_feed"): State.FETCHING,
    (State.FETCHING, "feed_page"): State.IDLE,
    (State.FETCHING, "failed"): State.IDLE,
}


@dataclass(frozen=True)
class UploadActions:
    """What the driver must do with the journal after an upload result, in this order."""

    rewind_to: int | None                  # centre holds less than we believed acknowledged
    quarantine: list[tuple[int, str, str]]  # (seq, code, message) rejected for good
    ack: int | None                        # mark_acked(ack)
    deferred: int                          # entries the centre asked us to re-send later
    accepted: int
    duplicate: int


@dataclass(frozen=True)
class FeedActions:
    messages: list[dict]
    cursor: int
    more: bool
    rewind_to: int | None
    resync: str | None = None     # why the downlink restarts from 0 (messages are then empty)
    epoch: str | None = None      # the epoch to save with the cursor


class UplinkCore:
    """The edge side of the protocol. ``acked`` is the journal's acked_seq when the core starts."""

    def __init__(self, device: str, *, acked: int = 0, cursor: int = 0, epoch: str | None = None) -> None:
        self.device = device
        self.state = State.IDLE
        self.acked = acked
        self.cursor = cursor
        self.epoch = epoch
        self._sent: list[int] = []

    def _go(self, event: str) -> None:
        new = _TRANSITIONS.get((self.state, event))
        if new is None:
            raise IllegalEvent(f"{event} is not allowed while {self.state.value}")
        self.state = new

    def start_upload(self, entries: Sequence) -> dict:
        """Entries (with .seq/.raw, from the outbox, in seq order) -> the upload message."""
        if not entries:
            raise IllegalEvent("an upload needs at least one entry")
        self._go("start_upload")
        self._sent = [e.seq for e in entries]
        return Upload(self.device, [(e.seq, e.raw) for e in entries]).to_msg()

    def upload_result(self, msg: Any) -> UploadActions:
        if self.state is not State.UPLOADING:
            raise IllegalEvent(f"upload_result is not allowed while {self.state.value}")
        result = UploadResult.from_msg(msg)  # a bad message raises before any state change
        self._go("upload_result")
        sent = set(self._sent)
        by_status: dict[str, int] = {s: 0 for s in STATUSES}
        quarantine = []
        for r in result.results:
            if r.seq not in sent:
                continue  # the centre answered about something we did not send: ignore it
            by_status[r.status] += 1
            if r.status == REJECTED:
                quarantine.append((r.seq, r.code or "rejected", r.message or ""))
        rewind = None
        if result.ack < self.acked:
            rewind, self.acked = result.ack, result.ack
        # The centre cannot hold more of our journal than we sent it, except after our own restore;
        # never acknowledge past the last entry of this batch.
        top = min(result.ack, max(self._sent))
        ack = None
        if top > self.acked:
            self.acked = ack = top
        return UploadActions(rewind, quarantine, ack, by_status[DEFERRED], by_status[ACCEPTED], by_status[DUPLICATE])

    def start_feed(self, limit: int = FEED_LIMIT) -> dict:
        self._go("start_feed")
        return FeedRequest(self.cursor, limit).to_msg()

    def feed_page(self, msg: Any) -> FeedActions:
        if self.state is not State.FETCHING:
            raise IllegalEvent(f"feed_page is not allowed while {self.state.value}")
        page = FeedPage.from_msg(msg)
        self._go("feed_page")
        rewind = None
        if page.high_water < self.acked:
            rewind, self.acked = page.high_water, page.high_water
        why = None
        if page.epoch is not None and self.epoch is not None and page.epoch != self.epoch:
            why = f"the centre was restored from a backup (epoch {self.epoch} -> {page.epoch})"
        elif page.head is not None and page.head < self.cursor:
            why = f"the centre's feed ends at {page.head}, below our cursor {self.cursor}"
        if page.epoch is not None:
            self.epoch = page.epoch       # a centre's first epoch is adopted as is
        if why is not None:
            # The page answered a cursor from another timeline: drop it, read again from the start.
            self.cursor = 0
            return FeedActions([], 0, True, rewind, why, self.epoch)
        return FeedActions(page.messages, page.cursor, page.more, rewind, None, self.epoch)

    def applied(self, cursor: int) -> None:
        """The driver applied (and persisted) the feed up to ``cursor``."""
        self.cursor = max(self.cursor, cursor)

    def failed(self) -> None:
        self._go("failed")


# -- the centre side ----------------------------------------------------------------------------------
def upload_result(outcome) -> dict:
    """A store BatchOutcome -> the upload_result message."""
    return UploadResult(outcome.ack, [EntryResult(r.seq, r.status, r.code, r.message) for r in outcome.results]).to_msg()
