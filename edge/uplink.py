"""The uplink: a trio task that drives :class:`sync.protocol.UplinkCore` over HTTP (httpx).

Theory of operation
-------------------
One round (:meth:`Uplink.sync_once`):

1. **Downlink first.** Ask the feed for messages after the saved cursor; hand each to the daemon's
   ``on_downlink(message)``; save the cursor (``downlink.json``, fsynced) after each page. The page also
   carries the centre's ``high_water`` for this device: if it is below the journal's ``acked_seq``
   the centre was restored from an older backup, and the journal is rewound to re-send from there.
2. **Then the outbox**, in bounded batches (count and bytes), until it is empty. For each result:
   rewind if the centre holds less than we thought, quarantine rejected entries (they never block
   the rest), then mark acknowledged what the centre durably holds. Deferred entries (a gap) are
   simply sent again from the ack on.

:meth:`Uplink.run` repeats rounds forever: after a good round it sleeps ``idle_s`` (or until
:meth:`Uplink.wake` is called, e.g. after a settlement); after a failure it waits an exponential
backoff with jitter (:class:`sync.protocol.Backoff`) and tries again, never giving up while a
backlog exists. Each HTTP request is bounded by ``fail_after(request_s)`` at the call site (an outer
bound: the client's own ``wait_s`` network timeout normally ends a stuck request first).

Downlink bundles: a message the callback refuses with a :class:`sync.bundles.BundleError` is
reported (``status.refused``) and skipped; on a broken version chain the uplink fetches the newest
full bundle of that kind once and offers it. Any other exception from the callback is transient:
the cursor stays and the round fails (backoff).

httpx exceptions never escape: they become :class:`sync.errors.TransportError`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import trio

from edge.journal.errors import JournalError
from edge.transport import answer_of, post_frame, transport_error
from sync import auth, protocol, wire
from sync.bundles import BundleBrokenChain, BundleError, BundleStale, envelope
from sync.errors import CentreRefused, SyncError, TransportError

log = logging.getLogger("edge.uplink")


class DownlinkFailed(SyncError):
    """The daemon's ``on_downlink`` callback failed on a message (not a bundle refusal): transient, the
    cursor stays on the message and the round is retried after a backoff."""

    code = "downlink_apply_failed"
    retryable = True


class DownlinkDeferred(Exception):
    """Raised by an ``on_downlink`` callback that cannot take this message now (e.g. ``edge sync --once``
    run without the daemon, which owns outcomes): the feed stops before it and resumes there later."""
CURSOR_FILE = "downlink.json"
REGISTER_PROBE_S = 3.0   # retry interval while the centre does not know this device (re-registration)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class CentreClient:
    """Signed requests from one device to its centre."""

    def __init__(self, base_url: str, device: str, key, *, client: httpx.AsyncClient,
                 clock: Callable[[], int] = wall_ms, wait_s: float = 30.0,
                 on_time: Callable[[int], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.wait_s = wait_s
        self.device = device
        self.key = key
        self.client = client
        self.clock = clock
        # ``on_time(centre_ms)``: the centre's clock, from the Date header of each of its sync frames (a
        # refusal's too: a 401 for a wrong signing time is how a wrong PC clock shows): the counter's time
        # floor (edge.counter.clock). A response hook, as the frames are read by edge.transport.
        self.on_time = on_time
        if on_time is not None:
            hooks = client.event_hooks
            client.event_hooks = {**hooks, "response": [*hooks.get("response", []), self._saw]}

    async def _saw(self, resp: httpx.Response) -> None:
        if self.on_time is None or wire.CONTENT_TYPE not in resp.headers.get("content-type", ""):
            return       # not a sync frame: a proxy's page says nothing about the centre's clock
        from edge.counter.clock import centre_ms_of

        centre_ms = centre_ms_of(resp.headers.get("date"))
        if centre_ms is not None:
            self.on_time(centre_ms)

    async def call(self, path: str, message: Any) -> Any:
        body = wire.encode(message)
        headers = auth.sign_request(self.key, self.device, "POST", path, body, time_ms=self.clock())
        return await post_frame(self.base_url + path, message, client=self.client, headers=headers, body=body,
                                wait_s=self.wait_s)

    async def latest_bundle(self, kind: str) -> bytes:
        path = f"/v1/bundle/{kind}"
        headers = auth.sign_request(self.key, self.device, "GET", path, b"", time_ms=self.clock())
        try:
            resp = await self.client.get(self.base_url + path, headers=headers, timeout=httpx.Timeout(self.wait_s))
        except httpx.HTTPError as exc:
            raise transport_error(self.base_url + path, exc) from exc   # an untrusted certificate keeps its code
        if resp.status_code != 200:
            answer_of(self.base_url + path, resp.status_code, resp.headers.get("content-type", ""), resp.content)
            raise TransportError(f"cannot fetch the {kind} bundle: HTTP {resp.status_code}")
        return resp.content


@dataclass
class UplinkStatus:
    """What ``edge status`` and diagnostics show about sync."""

    last_success_ms: int | None = None
    last_attempt_ms: int | None = None
    last_error: dict | None = None
    failures: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: list = field(default_factory=list)    # [(seq, code, message)]
    refused: list = field(default_factory=list)        # [{"id", "code", "message"}] downlink refusals
    rewinds: list = field(default_factory=list)        # [(from_acked, to_seq)]
    resyncs: list = field(default_factory=list)        # [why] downlink read again from 0 (centre restored)
    cursor: int = 0
    epoch: str | None = None                           # the centre's restore epoch the cursor belongs to


@dataclass(frozen=True)
class RoundReport:
    downlink: int
    uploaded: int
    batches: int


class Uplink:
    """Send the journal's outbox to the centre and apply the downlink; see the module docstring.

    ``journal`` is an :class:`edge.journal.store.JournalStore` (or anything with pending, mark_acked,
    acked_seq, rewind_ack, quarantine, backlog); its blocking calls run in worker threads.
    """

    def __init__(self, journal, client: CentreClient, *, state_dir: str | os.PathLike | None = None,
                 on_downlink: Callable[[dict], Awaitable[None]] | None = None,
                 batch_entries: int = protocol.BATCH_MAX_ENTRIES, batch_bytes: int = protocol.BATCH_MAX_BYTES,
                 backoff: protocol.Backoff | None = None, idle_s: float = 30.0, request_s: float = 60.0,
                 register_probe_s: float = REGISTER_PROBE_S) -> None:
        self.journal = journal
        self.client = client
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.on_downlink = on_downlink
        self.batch_entries = batch_entries
        self.batch_bytes = batch_bytes
        self.backoff = backoff or protocol.Backoff()
        self.idle_s = idle_s
        self.request_s = request_s
        self.register_probe_s = register_probe_s
        cursor, epoch = self._load_cursor()
        self.status = UplinkStatus(cursor=cursor, epoch=epoch)
        self.core = protocol.UplinkCore(client.device, acked=0, cursor=cursor, epoch=epoch)
        self._wake = trio.Event()

    # -- cursor persistence ----------------------------------------------------------------------
    def _load_cursor(self) -> tuple[int, str | None]:
        if self.state_dir is None:
            return 0, None
        try:
            saved = json.loads((self.state_dir / CURSOR_FILE).read_text())
            epoch = saved.get("epoch")
            return int(saved["cursor"]), epoch if isinstance(epoch, str) else None
        except FileNotFoundError:
            return 0, None
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("uplink: %s is damaged; reading the downlink again from the start", CURSOR_FILE)
            return 0, None

    def _save_cursor(self, cursor: int) -> None:
        if self.state_dir is None:
            return
        tmp = self.state_dir / (CURSOR_FILE + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"cursor": cursor, "epoch": self.core.epoch}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_dir / CURSOR_FILE)
        except OSError as exc:
            # Disk full or read-only: the message is applied but the cursor not saved; it will be
            # offered again (bundles then refuse as stale), so this is retryable, not fatal.
            raise DownlinkFailed(f"cannot save the downlink cursor in {self.state_dir}: {exc.strerror}; "
                                 "free disk space on this PC") from exc

    # -- one request, bounded at the call site ----------------------------------------------------
    async def _call(self, path: str, message: Any) -> Any:
        try:
            with trio.fail_after(self.request_s):
                return await self.client.call(path, message)
        except trio.TooSlowError:
            raise TransportError(f"the centre did not answer within {self.request_s:g} s; retrying later") from None

    async def _j(self, fn, *args):
        return await trio.to_thread.run_sync(fn, *args)

    # -- a round ---------------------------------------------------------------------------------
    async def sync_once(self) -> RoundReport:
        """Downlink, then upload until the outbox is empty. Raises SyncError on a failure."""
        self.status.last_attempt_ms = wall_ms()
        self.core.acked = await self._j(lambda: self.journal.acked_seq)
        received = await self._downlink()
        uploaded = batches = 0
        while True:
            pending = await self._j(lambda: self.journal.pending(self.batch_entries, self.batch_bytes))
            batch = protocol.make_batch(pending, max_entries=self.batch_entries, max_bytes=self.batch_bytes)
            if not batch:
                break
            msg = self.core.start_upload(batch)
            try:
                reply = await self._call("/v1/upload", msg)
                actions = self.core.upload_result(reply)
            except BaseException:
                self.core.failed()
                raise
            await self._apply_upload(actions)
            uploaded += len(batch)
            batches += 1
            self.status.sent += len(batch)
            if actions.ack is None and not actions.quarantine and actions.rewind_to is None:
                # The centre took nothing: it misses an entry below this batch. If that entry sits in
                # our quarantine (rejected before a centre restore), send it again; else pause.
                if not await self._release_quarantined(self.core.acked, batch[0].seq):
                    raise TransportError("the centre deferred the whole batch; retrying after a pause")
        self.status.last_success_ms = wall_ms()
        self.status.last_error = None
        return RoundReport(received, uploaded, batches)

    async def _apply_upload(self, a: protocol.UploadActions) -> None:
        if a.rewind_to is not None:
            await self._rewind(a.rewind_to)
        for seq, code, message in a.quarantine:
            log.warning("uplink: entry %s rejected by the centre (%s): %s", seq, code, message)
            await self._j(self.journal.quarantine, seq, code, message)
            self.status.quarantined.append((seq, code, message))
        if a.ack is not None:
            await self._j(self.journal.mark_acked, a.ack)
        self.status.accepted += a.accepted
        self.status.duplicates += a.duplicate

    async def _rewind(self, to_seq: int) -> None:
        before = await self._j(lambda: self.journal.acked_seq)
        log.warning("uplink: the centre holds entries only up to %s but acknowledged %s before "
                    "(restored from a backup?): re-sending from %s", to_seq, before, to_seq + 1)
        await self._j(self.journal.rewind_ack, to_seq)
        # Entries rejected after the centre's backup were forgotten with it: send them again too,
        # or the centre would wait for them forever (they are rejected and quarantined again).
        await self._release_quarantined(to_seq, None)
        self.status.rewinds.append((before, to_seq))

    async def _release_quarantined(self, above: int, below: int | None) -> int:
        rows = await self._j(self.journal.quarantined)
        seqs = [q[0] for q in rows if q[0] > above and (below is None or q[0] < below)]
        for seq in seqs:
            await self._j(self.journal.release, seq)
        if seqs:
            log.warning("uplink: re-sending quarantined entries %s: the centre no longer holds their rejection", seqs)
        return len(seqs)

    async def _downlink(self) -> int:
        count = resyncs = 0
        while True:
            msg = self.core.start_feed()
            try:
                reply = await self._call("/v1/feed", msg)
                actions = self.core.feed_page(reply)
            except BaseException:
                self.core.failed()
                raise
            if actions.rewind_to is not None:
                await self._rewind(actions.rewind_to)
            if actions.resync is not None:
                resyncs += 1
                if resyncs > 1:
                    raise TransportError(f"the centre's feed keeps changing under us ({actions.resync}); "
                                         "retrying later")
                log.warning("uplink: %s: reading the downlink again from the start (bundles already held are "
                            "skipped, notices deduplicated by id)", actions.resync)
                self.status.resyncs.append(actions.resync)
                await self._j(self._save_cursor, 0)
                self.status.cursor, self.status.epoch = 0, actions.epoch
                continue
            self.status.epoch = actions.epoch
            for m in actions.messages:
                try:
                    await self._deliver(m)
                except DownlinkDeferred:
                    self.status.cursor = self.core.cursor
                    return count
                count += 1
                await self._j(self._save_cursor, m["id"])
                self.core.applied(m["id"])
            await self._j(self._save_cursor, actions.cursor)
            self.core.applied(actions.cursor)
            self.status.cursor = self.core.cursor
            if not actions.more or not actions.messages:
                return count

    async def _deliver(self, m: dict) -> None:
        if self.on_downlink is None:
            return
        try:
            await self.on_downlink(m)
        except BundleStale:
            return  # we already hold this version or newer: nothing to do
        except BundleBrokenChain as exc:
            kind = _bundle_kind(m)
            log.warning("uplink: bundle %s refused (%s); fetching the newest full %s bundle", m.get("id"),
                        exc.message, kind)
            self.status.refused.append({"id": m.get("id"), "code": exc.code, "message": exc.message})
            if kind is not None:
                try:
                    with trio.fail_after(self.request_s):
                        raw = await self.client.latest_bundle(kind)
                except trio.TooSlowError:
                    raise TransportError("fetching a full bundle timed out") from None
                try:
                    await self.on_downlink({"kind": "bundle", "id": m.get("id"), "payload": raw})
                except BundleError as exc2:
                    if not isinstance(exc2, BundleStale):
                        self.status.refused.append({"id": m.get("id"), "code": exc2.code, "message": exc2.message})
        except BundleError as exc:
            log.warning("uplink: downlink %s refused: %s", m.get("id"), exc.message)
            self.status.refused.append({"id": m.get("id"), "code": exc.code, "message": exc.message})
        except (DownlinkDeferred, SyncError):
            raise
        except Exception as exc:
            raise DownlinkFailed(f"applying downlink message {m.get('id')} ({m.get('kind')}) failed: "
                                 f"{exc.__class__.__name__}: {exc}; it is retried") from exc

    # -- forever -------------------------------------------------------------------------------------
    def unknown_device_advice(self) -> str:
        """What the technician does when the centre does not know this device (docs/sync.md)."""
        pub = base64.b64encode(bytes(self.client.key.verify_key)).decode()
        site = self.client.device.split("-")[1] if self.client.device.count("-") >= 2 else "SITE"
        return (f"the centre does not know device {self.client.device} (it was restored from a backup taken "
                f"before this device enrolled): on the centre run `centre register {self.client.device} "
                f"--site {site} --pubkey {pub}` (docs/sync.md, \"Restored centre\"); do not re-enrol this "
                f"counter. Entries stay queued; retrying every {self.register_probe_s:g} s")

    def wake(self) -> None:
        """Ask for a round now (e.g. right after a settlement was journaled)."""
        self._wake.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            self._wake = trio.Event()
            try:
                report = await self.sync_once()
                self.backoff.reset()
                self.status.failures = 0
                log.debug("uplink: round done: %s", report)
                delay = self.idle_s
            except (SyncError, JournalError) as exc:
                # Transient or not, keep trying: a refused device may be re-activated at the centre,
                # and the backlog must never be abandoned. Non-retryable errors wait the longest.
                self.status.failures += 1
                self.status.last_error = exc.to_dict()
                if exc.code == "unknown_device":
                    # The centre lost this device (restored from a backup taken before it enrolled): the
                    # technician registers it there; ask again soon so it drains within seconds of that.
                    # (The centre's own message may name another procedure; ours is the one for a counter.)
                    delay = self.backoff.rng.uniform(self.register_probe_s / 2, self.register_probe_s)
                    if self.status.failures == 1 or self.status.failures % 100 == 0:
                        log.error("uplink: %s", self.unknown_device_advice())
                    log.info("uplink: the centre does not know this device yet; next try in %.1f s", delay)
                else:
                    if not exc.retryable:
                        log.error("uplink: the centre refused: %s (%s)", exc.message, exc.code)
                        self.backoff.failures = max(self.backoff.failures, 30)
                    delay = self.backoff.next_delay()
                    log.info("uplink: %s; next try in %.1f s", exc.message, delay)
            with trio.move_on_after(delay):
                await self._wake.wait()


def _bundle_kind(m: dict) -> str | None:
    try:
        return envelope(bytes(m["payload"]))["kind"]
    except (BundleError, KeyError, TypeError):
        return None


async def open_uplink(state_dir: str | os.PathLike, journal, *, client: httpx.AsyncClient,
                      on_downlink=None, **options) -> Uplink:
    """Build the uplink for an enrolled state directory (reads device.json and device.key)."""
    from edge.enrol import KEY_FILE, load_device
    from edge.journal.keys import load_device_key

    cfg = load_device(state_dir)
    key = load_device_key(Path(state_dir) / KEY_FILE)
    centre = CentreClient(cfg.centre_url, cfg.device, key, client=client)
    return Uplink(journal, centre, state_dir=state_dir, on_downlink=on_downlink, **options)


__all__ = ["CentreClient", "DownlinkDeferred", "DownlinkFailed", "RoundReport", "Uplink", "UplinkStatus", "open_uplink",
           "post_frame", "wall_ms", "CentreRefused"]
