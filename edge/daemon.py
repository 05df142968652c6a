"""The counter daemon: one trio nursery holding every service (ARCHITECTURE.md, STYLE.md section 2).

    card watcher      edge.card.watch_cards -> bounded channel -> CardDesk (which card is where)
    counter API       Starlette on hypercorn's trio worker, 127.0.0.1 only (edge.counter.api)
    uplink            edge.uplink.Uplink: journal up, bundles/outcomes down (edge.counter.downlink)
    refresher         watches the centre: reachability for the banner (and the uplink woken when the
                      centre answers again), and the cache's refresh time after each good sync round
                      (cache age for the offline limits)

Each starts with ``await nursery.start(...)`` and reports ready with ``task_status.started()``, so
:func:`run` hands back a :class:`Running` only when the page can be opened. Cancelling the nursery
(SIGTERM/Ctrl-C in ``edge run``) stops them all; journal appends in flight are shielded and finish,
then the journal and cache are closed: nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from edge.config import Config

log = logging.getLogger("edge.daemon")


class DaemonError(Exception):
    code = "daemon_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


@dataclass
class Running:
    url: str
    counter: object
    uplink: object | None
    cancel_scope: trio.CancelScope
    token: str = ""           # the installation token (api.token): what a HIS presents

    @property
    def headers(self) -> dict[str, str]:
        """The credential a local client sends (the HIS's: ``Authorization: Bearer <token>``)."""
        return {"Authorization": f"Bearer {self.token}"}


async def card_service(desk, poll_interval: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Feed the CardDesk from the card watcher over a small bounded channel."""
    from edge.card import watch_cards

    send, recv = trio.open_memory_channel(8)
    async with trio.open_nursery() as nursery, recv:
        await nursery.start(partial(watch_cards, send, poll_interval=poll_interval))
        task_status.started()
        async for event in recv:
            desk.on_event(event)
            log.info("card event", extra={"event": "card_" + event.kind, "reader": event.reader,
                                          "code": getattr(event.error, "code", None)})


async def refresher(counter, uplink, probe_interval: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Keep the online/offline state and the cache's refresh time current.

    Every half second it looks at the uplink's last good round (a good round means the cache is as
    fresh as the centre's feed); every ``probe_interval`` it asks the centre's /health, bounded by the
    online timeout, for the banner. A probe answered after one that was not (or the first one) wakes the
    uplink: entries journaled meanwhile go now, not at the end of its backoff.
    The refresher's own previous probe decides, not the link state, which a visit may already have
    turned online (a visit the centre rejected then journals nothing, so nothing else wakes the uplink).
    """
    task_status.started()
    seen = None
    probed_ok: bool | None = None     # what the previous probe found (None: no probe yet)
    next_probe = trio.current_time()
    while True:
        if uplink is not None:
            ok_ms = uplink.status.last_success_ms
            if ok_ms is not None and ok_ms != seen:
                seen = ok_ms
                await counter.mark_refreshed_at(ok_ms)
                counter.link.ok(ok_ms)
        if counter.centre is not None and trio.current_time() >= next_probe:
            next_probe = trio.current_time() + probe_interval
            ok = False
            with trio.move_on_after(counter.settings.online_timeout):
                ok = await counter.centre.ping()
            was = counter.link.online
            if ok:
                counter.link.ok(counter.clock.wall_ms())
            else:
                counter.link.failed(counter.clock.wall_ms(), "the centre does not answer")
            if was != counter.link.online:
                log.info("centre %s", "reachable" if ok else "unreachable",
                         extra={"event": "online" if ok else "offline"})
            if ok and probed_ok is not True and uplink is not None:
                uplink.wake()
            probed_ok = ok
        await trio.sleep(min(0.5, probe_interval))


def wake_uplink(counter, uplink) -> None:
    """An entry was journaled: send it at once, unless the uplink's last round failed and the centre is
    unreachable now (the refresher's probe or the visit itself found so). A round then could only fail
    again, and it would take its CPU from the next visits; the uplink retries on its own backoff, and the
    refresher wakes it as soon as the centre answers again."""
    if uplink.status.failures == 0 or counter.link.online:
        uplink.wake()


def _open_stores(cfg: Config):
    from edge.cache import Cache
    from edge.enrol import device_key, load_device
    from edge.journal import JournalStore

    state = Path(cfg.state_dir)
    device = load_device(state)
    key = device_key(state)
    journal = JournalStore.open(state / "journal.db", signing_key=key, device=device.device)
    try:
        cache = Cache.open(state / "cache.db")
        cache.catch_up(journal.entries(cache.applied_seq() + 1))
    except BaseException:
        journal.close()
        raise
    return device, key, journal, cache


async def run(cfg: Config, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the daemon until cancelled. ``task_status.started(Running)`` once the API answers."""
    import httpx

    from edge.counter import CardDesk, CentreClient, Counter, Settings, SimulatedCards, build_app, serve
    from edge.counter.auth import Auth
    from edge.counter.downlink import handle
    from edge.counter.prices import PriceList
    from edge.transport import tls_context
    from edge.uplink import CentreClient as SyncClient, Uplink
    from sync import auth

    try:
        tls = tls_context(cfg.state_dir)   # the centre's pinned CA, for the uplink and online settlement alike
        device, key, journal, cache = await trio.to_thread.run_sync(_open_stores, cfg)
    except Exception as exc:
        code = getattr(exc, "code", "daemon_error")
        raise DaemonError(f"cannot start: {getattr(exc, 'message', exc)}", code=code) from exc
    try:
        # The installation token (written at first start, never replaced) and the operators.
        callers = await trio.to_thread.run_sync(Auth.in_state_dir, cfg.state_dir)
    except Exception as exc:
        journal.close()
        cache.close()
        raise DaemonError(f"cannot start: {getattr(exc, 'message', exc)}", code=getattr(exc, "code", "daemon_error")) \
            from exc
    centre = CentreClient(device.centre_url, lambda m, p, b: auth.sign_request(
        key, device.device, m, p, b, time_ms=counter.clock.wall_ms()), verify=tls)
    cards = SimulatedCards() if cfg.card.simulated else CardDesk()
    counter = Counter(cache=cache, journal=journal, cards=cards, centre=centre,
                      settings=Settings(level=cfg.counter.level, online_timeout=cfg.counter.online_timeout_s,
                                        retry_online_after=cfg.counter.retry_online_after_s,
                                        region=cfg.counter.region or None))
    centre.on_time = counter.saw_centre_time      # the last centre time seen: the time floor (edge.counter.clock)
    try:
        async with httpx.AsyncClient(trust_env=False, verify=tls) as http, trio.open_nursery() as nursery:
            if cfg.card.enabled and not cfg.card.simulated:
                await nursery.start(card_service, cards, cfg.card.poll_interval_s)
            app = build_app(counter, prices=PriceList.in_state_dir(cfg.state_dir), auth=callers)
            urls = await nursery.start(serve, app, cfg.counter.host, cfg.counter.port)
            uplink = None
            if cfg.sync.enabled:
                uplink = Uplink(journal, SyncClient(device.centre_url, device.device, key, client=http,
                                                          on_time=counter.saw_centre_time),
                                state_dir=cfg.state_dir, on_downlink=partial(handle, counter, device.bundle_verify_key),
                                idle_s=cfg.sync.idle_s)
                await nursery.start(uplink.run)
                counter.on_journaled = partial(wake_uplink, counter, uplink)
            await nursery.start(refresher, counter, uplink, cfg.sync.probe_interval_s)
            log.info("counter daemon ready", extra={"event": "ready", "url": urls[0], "device": device.device})
            task_status.started(Running(urls[0], counter, uplink, nursery.cancel_scope, callers.token))
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await centre.aclose()
            await trio.to_thread.run_sync(journal.close)
            await trio.to_thread.run_sync(cache.close)
            callers.close()
            log.info("counter daemon stopped; journal closed", extra={"event": "stopped"})


async def run_until_signal(cfg: Config, *, on_ready=None) -> None:
    """``edge run``: the daemon until SIGTERM or Ctrl-C, then a clean shutdown."""
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(run, cfg)
            if on_ready is not None:
                on_ready(running)
            async for sig in signals:
                log.info("stopping on signal", extra={"event": "signal", "signal": int(sig)})
                nursery.cancel_scope.cancel()
                break
