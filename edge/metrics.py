"""The counter's Prometheus metrics (prometheus_client, one ``CollectorRegistry`` per app).

    m = EdgeMetrics().track_counter(counter)      # journal, clock and card desk of a running Counter
    m.render()                                   # exposition bytes (what GET /metrics serves)

Settlements by mode, cancels, refusals by code, the offline share, the backlog and its oldest age,
card errors by code. Everything but card errors is read from the journal (the one record of what
happened, so the numbers agree with it and survive restarts): entries appended since the last
scrape are counted at scrape time, the backlog is read then. Card errors are counted as the card
watcher reports them. The centre's metrics are :mod:`sync.centre.metrics`; the shared route and
scrape-time collector are :mod:`sync.metrics`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from sync.metrics import CONTENT_TYPE, Scraped, metrics_route

__all__ = ["CONTENT_TYPE", "EdgeMetrics", "counter_metrics_route"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class EdgeMetrics:
    """The counter's metrics over their own registry (``self.registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.settlements = Counter("edge_settlements_total", "Visits journaled, by mode (online, offline, full_payment)",
                                   ("mode",), registry=r)
        self.cancels = Counter("edge_cancels_total", "Settlements cancelled (撤销)", registry=r)
        self.refusals = Counter("edge_refusals_total", "Visits refused, by code", ("code",), registry=r)
        self.card_errors = Counter("edge_card_errors_total", "Card path errors, by code", ("code",), registry=r)
        self.offline_share = Gauge("edge_offline_share", "Share of journaled visits settled offline (0..1)",
                                   registry=r)
        self.offline_share.set_function(self._offline_share)
        self._modes: dict[str, int] = {}   # the settlements by mode, for the share (a Counter is write-only)
        self._backlog: Callable[[], int] | None = None
        self._oldest: Callable[[], float] | None = None
        Scraped("gauge", "edge_backlog_entries", "Journal entries not yet acknowledged by the centre",
                lambda: self._backlog() if self._backlog else 0, registry=r)
        Scraped("gauge", "edge_backlog_oldest_age_seconds", "Age of the oldest unsent journal entry (0 when none)",
                lambda: self._oldest() if self._oldest else 0, registry=r)
        self._hooks: list[Callable[[], None]] = []
        self._seen = 0
        self._lock = threading.Lock()

    def _offline_share(self) -> float:
        with self._lock:
            total = sum(self._modes.values())
            return self._modes.get("offline", 0) / total if total else 0.0

    def render(self) -> bytes:
        """Run the scrape-time hooks (count new journal entries), then the registry's exposition."""
        for hook in list(self._hooks):
            hook()
        return generate_latest(self.registry)

    def observe_entry(self, entry) -> None:
        """Count one journal entry (an edge.journal Entry, or anything with .kind and .body)."""
        body = entry.body if isinstance(entry.body, Mapping) else {}
        mode = None
        if entry.kind == "settlement":
            mode = str(body.get("mode", "unknown"))
        elif entry.kind == "claim":
            mode = "full_payment"
        elif entry.kind == "cancel":
            self.cancels.inc()
        elif entry.kind == "refusal":
            self.refusals.labels(code=str(body.get("code", "unknown"))).inc()
        if mode is not None:
            self.settlements.labels(mode=mode).inc()
            with self._lock:
                self._modes[mode] = self._modes.get(mode, 0) + 1

    def card_error(self, code: str) -> None:
        self.card_errors.labels(code=code).inc()

    def track_journal(self, journal, clock_ms: Callable[[], int]) -> "EdgeMetrics":
        """Count entries of an edge.journal JournalStore at scrape time (only those appended since the
        last scrape are read), and read its backlog then."""
        tail_lock = threading.Lock()

        def tail() -> None:
            with tail_lock:
                for entry in journal.entries(self._seen + 1):
                    self.observe_entry(entry)
                    self._seen = entry.seq

        self._hooks.append(tail)
        return self.track_backlog(journal, clock_ms)

    def track_backlog(self, journal, clock_ms: Callable[[], int]) -> "EdgeMetrics":
        """Only the backlog gauges (when entries are counted with :meth:`observe_entry` instead)."""
        def oldest() -> float:
            b = journal.backlog()
            return 0 if b.oldest_time_ms is None else max(0, clock_ms() - b.oldest_time_ms) / 1000

        self._backlog = lambda: journal.backlog().count
        self._oldest = oldest
        return self

    def track_cards(self, desk) -> "EdgeMetrics":
        """Count the errors among the card events a desk (edge.counter.CardDesk) receives. The desk's
        ``on_event`` is wrapped on this instance only; the card watcher calls it as before."""
        original = getattr(desk, "on_event", None)
        if original is None:   # simulated cards (demo): no card path, nothing to count
            return self

        def on_event(event):
            error = getattr(event, "error", None)
            if error is not None:
                self.card_error(str(getattr(error, "code", "card_error")))
            return original(event)

        desk.on_event = on_event
        return self

    def track_counter(self, counter) -> "EdgeMetrics":
        """Everything for a running edge.counter.Counter: its journal, clock and card desk."""
        clock = getattr(getattr(counter, "clock", None), "wall_ms", None)
        self.track_journal(counter.journal, clock or _wall_ms)
        self.track_cards(counter.cards)
        return self


def counter_metrics_route(counter, path: str = "/metrics"):
    """``/metrics`` for the counter API (edge.counter.api.build_app): EdgeMetrics over ``counter``.
    Card errors are counted from now on; the journal is tracked from the first scrape (its entries
    are counted from seq 1 then, so nothing journaled before is missed). Loopback clients only."""
    metrics = EdgeMetrics()
    if hasattr(counter, "cards"):
        metrics.track_cards(counter.cards)
    started = threading.Lock()
    state = {"tracking": False}

    def render() -> bytes:
        with started:
            if not state["tracking"] and hasattr(counter, "journal"):
                clock = getattr(getattr(counter, "clock", None), "wall_ms", None)
                metrics.track_journal(counter.journal, clock or _wall_ms)
                state["tracking"] = True
        return metrics.render()

    route = metrics_route(render, path)
    route.metrics = metrics    # type: ignore[attr-defined]  # for tests and the daemon: the same registry
    return route
