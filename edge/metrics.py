"""Prometheus metrics: a small registry in the text exposition format (0.0.4) and a Starlette route.

Why not prometheus_client: the counter PC runs one small process and the centre a few workers; this
needs counters, gauges and a loopback-only ``/metrics`` route, no multiprocess mode, no global state.
A registry is an object (tests and the two apps each get their own), never a module global.

    reg = Registry()
    settled = reg.counter("edge_settlements_total", "Visits settled, by mode", ("mode",))
    settled.inc(mode="offline")
    reg.gauge("edge_backlog_entries", "Unsent entries").set_function(lambda: journal.backlog().count)
    app.router.routes.append(metrics_route(reg))        # GET /metrics, loopback clients only

Edge metrics (:func:`edge_metrics`): settlements by mode, offline share, backlog and its oldest age,
card errors by code (:class:`EdgeMetrics`). Centre metrics (:class:`CentreMetrics`): entries held (the
ingest rate is ``rate(centre_entries_total[5m])``), rejections by code, review queue size.
Gauges backed by a function are read at scrape time; a function that raises is reported as a
comment line and the gauge is left out of that scrape (a broken journal must not break /metrics).
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
from typing import Callable, Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricError(ValueError):
    """A metric was declared or used wrongly (a bug in the caller, raised at once)."""


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        if not _NAME_RE.fullmatch(name):
            raise MetricError(f"invalid metric name {name!r}")
        self.name, self.help = name, help
        self.labelnames = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL_RE.fullmatch(label) or label.startswith("__"):
                raise MetricError(f"invalid label name {label!r} on {name}")
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        self._fn: Callable[[], float | Mapping] | None = None

    def set_function(self, fn: Callable[[], float | Mapping]) -> None:
        """Read the value at scrape time: a number, or {label value(s): number} for labelled metrics
        (for a counter the function must never go down, e.g. a row count of an append-only table)."""
        self._fn = fn

    def _key(self, labels: Mapping[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise MetricError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def samples(self) -> list[tuple[tuple[str, ...], float]]:
        if self._fn is not None:
            got = self._fn()
            if isinstance(got, Mapping):
                return sorted(((k if isinstance(k, tuple) else (str(k),)), v) for k, v in got.items())
            return [((), got)]
        with self._lock:
            return sorted(self._values.items())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in self.samples():
            lines.append(f"{self.name}{self._labels(key)} {_fmt(value)}")
        return lines

    def _labels(self, key: tuple[str, ...]) -> str:
        if not key:
            return ""
        return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(self.labelnames, key)) + "}"


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1, **labels: object) -> None:
        if amount < 0:
            raise MetricError(f"{self.name}: a counter only goes up (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    def before_scrape(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` before each render (e.g. count journal entries appended since the last scrape)."""
        self._hooks.append(fn)

    def _add(self, metric: _Metric) -> _Metric:
        with self._lock:
            old = self._metrics.get(metric.name)
            if old is not None:
                if type(old) is not type(metric) or old.labelnames != metric.labelnames:
                    raise MetricError(f"{metric.name} is already registered differently")
                return old
            self._metrics[metric.name] = metric
            return metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        return self._add(Counter(name, help, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labelnames))  # type: ignore[return-value]

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        lines: list[str] = []
        i = 0
        while i < len(self._hooks):   # by index: a hook may add another (started lazily), which runs too
            try:
                self._hooks[i]()
            except Exception as exc:  # same rule as a failing gauge: say so, serve the rest
                lines.append(f"# scrape hook unavailable: {type(exc).__name__}: {_escape_help(str(exc))}")
            i += 1
        for metric in list(self._metrics.values()):
            try:
                lines.extend(metric.render())
            except Exception as exc:  # a scrape-time function failed: report it, keep the rest
                lines.append(f"# {metric.name} unavailable: {type(exc).__name__}: {_escape_help(str(exc))}")
        return "\n".join(lines) + "\n"


# -- the edge's and the centre's metrics ------------------------------------------------------------
class EdgeMetrics:
    """The counter's metrics, read from the journal (the one record of what happened, so the numbers
    always agree with it and survive restarts) and from the card desk's events.

    ``EdgeMetrics().track_counter(counter)`` is all the daemon needs: journal entries appended since
    the last scrape are counted at scrape time (:meth:`track_journal`), the backlog is read then, and
    card errors are counted as the card watcher reports them (:meth:`track_cards`)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.settlements = r.counter("edge_settlements_total",
                                     "Visits journaled, by mode (online, offline, full_payment)", ("mode",))
        self.cancels = r.counter("edge_cancels_total", "Settlements cancelled (撤销)")
        self.refusals = r.counter("edge_refusals_total", "Visits refused, by code", ("code",))
        self.card_errors = r.counter("edge_card_errors_total", "Card path errors, by code", ("code",))
        self.offline_share = r.gauge("edge_offline_share", "Share of journaled visits settled offline (0..1)")
        self.offline_share.set_function(self._offline_share)
        self.backlog = r.gauge("edge_backlog_entries", "Journal entries not yet acknowledged by the centre")
        self.backlog_oldest = r.gauge("edge_backlog_oldest_age_seconds",
                                      "Age of the oldest unsent journal entry (0 when none)")
        self._seen = 0
        self._tail_lock = threading.Lock()

    def _offline_share(self) -> float:
        total = sum(v for _, v in self.settlements.samples())
        return self.settlements.value(mode="offline") / total if total else 0.0

    def observe_entry(self, entry) -> None:
        """Count one journal entry (an edge.journal Entry, or anything with .kind and .body)."""
        body = entry.body if isinstance(entry.body, Mapping) else {}
        if entry.kind == "settlement":
            self.settlements.inc(mode=str(body.get("mode", "unknown")))
        elif entry.kind == "claim":
            self.settlements.inc(mode="full_payment")
        elif entry.kind == "cancel":
            self.cancels.inc()
        elif entry.kind == "refusal":
            self.refusals.inc(code=str(body.get("code", "unknown")))

    def card_error(self, code: str) -> None:
        self.card_errors.inc(code=code)

    def track_journal(self, journal, clock_ms: Callable[[], int]) -> "EdgeMetrics":
        """Count entries of an edge.journal JournalStore at scrape time (only those appended since the
        last scrape are read), and read its backlog then."""
        def tail() -> None:
            with self._tail_lock:
                for entry in journal.entries(self._seen + 1):
                    self.observe_entry(entry)
                    self._seen = entry.seq

        self.registry.before_scrape(tail)
        return self.track_backlog(journal, clock_ms)

    def track_backlog(self, journal, clock_ms: Callable[[], int]) -> "EdgeMetrics":
        """Only the backlog gauges (when entries are counted with :meth:`observe_entry` instead)."""
        def oldest() -> float:
            b = journal.backlog()
            return 0 if b.oldest_time_ms is None else max(0, clock_ms() - b.oldest_time_ms) / 1000

        self.backlog.set_function(lambda: journal.backlog().count)
        self.backlog_oldest.set_function(oldest)
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


class CentreMetrics:
    """The centre's metrics. :meth:`track_store` reads them from the centre's store at scrape time
    (so they survive restarts and agree with the database); :meth:`observe_results` additionally
    counts each upload's per-entry results in this process."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.entries = r.counter("centre_entries_total",
                                 "Journal entries the centre holds; rate() of it is the ingest rate")
        self.rejections = r.counter("centre_rejections_total", "Entries rejected at ingest, by code", ("code",))
        self.review_queue = r.gauge("centre_review_queue_size", "Full-payment claims waiting for a reviewer")
        self.results = r.counter("centre_upload_results_total",
                                 "Per-entry upload results in this process, by status", ("status",))
        self.batches = r.counter("centre_upload_batches_total", "Upload batches committed by this process")

    def track_store(self, store) -> None:
        """Read entries, rejections and the review queue from a sync.centre Store at scrape time."""
        def rejections() -> dict:
            by_code: dict[str, int] = {}
            for row in store.rejections():
                by_code[str(row["code"])] = by_code.get(str(row["code"]), 0) + 1
            return by_code

        def queue() -> int:
            from sync.centre import review
            return len(review.claims(store))

        self.entries.set_function(store.entry_count)
        self.rejections.set_function(rejections)
        self.review_queue.set_function(queue)

    def observe_results(self, results: Iterable) -> None:
        """Count one committed batch: ``results`` items have ``.status`` (sync.protocol.EntryResult)."""
        self.batches.inc()
        for res in results:
            self.results.inc(status=str(getattr(res, "status", "unknown")))


# -- HTTP ---------------------------------------------------------------------------------------------
def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def metrics_route(registry: Registry, path: str = "/metrics"):
    """A Starlette Route serving ``registry``; answers 403 to clients not on loopback (the counter API
    may listen on the LAN for a POS; patients' visit counts are not for the LAN)."""
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def endpoint(request):
        client = request.client.host if request.client else None
        if not _loopback(client):
            return PlainTextResponse("metrics are served to 127.0.0.1 only\n", status_code=403)
        # Scrape-time functions read SQLite/PostgreSQL: never on the event loop.
        import trio

        return Response(await trio.to_thread.run_sync(registry.render), media_type=CONTENT_TYPE)

    return Route(path, endpoint, methods=["GET"])


def counter_metrics_route(counter, path: str = "/metrics"):
    """``/metrics`` for the counter API (edge.counter.api.build_app): EdgeMetrics over ``counter``.
    Card errors are counted from now on; the journal is tracked from the first scrape (its entries
    are counted from seq 1 then, so nothing journaled before is missed). Loopback clients only."""
    metrics = EdgeMetrics()
    if hasattr(counter, "cards"):
        metrics.track_cards(counter.cards)
    started = threading.Lock()
    state = {"tracking": False}

    def ensure() -> None:
        with started:
            if not state["tracking"] and hasattr(counter, "journal"):
                clock = getattr(getattr(counter, "clock", None), "wall_ms", None)
                metrics.track_journal(counter.journal, clock or _wall_ms)
                state["tracking"] = True

    metrics.registry.before_scrape(ensure)
    route = metrics_route(metrics.registry, path)
    route.metrics = metrics    # for tests and for the daemon to reach the same registry
    return route


def _wall_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def centre_metrics_route(path: str = "/metrics"):
    """``/metrics`` for the centre's app: CentreMetrics over ``request.app.state.store``, created on
    the first scrape (the store exists only once the app is built). Loopback clients only."""
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def endpoint(request):
        import trio

        client = request.client.host if request.client else None
        if not _loopback(client):
            return PlainTextResponse("metrics are served to 127.0.0.1 only\n", status_code=403)
        state = request.app.state
        metrics = getattr(state, "centre_metrics", None)
        if metrics is None:
            metrics = CentreMetrics()
            metrics.track_store(state.store)
            state.centre_metrics = metrics
        return Response(await trio.to_thread.run_sync(metrics.registry.render), media_type=CONTENT_TYPE)

    return Route(path, endpoint, methods=["GET"])


def metrics_app(registry: Registry):
    """A Starlette app with only ``/metrics`` (for a process that has no other HTTP server)."""
    from starlette.applications import Starlette

    return Starlette(routes=[metrics_route(registry)])


async def serve_metrics(registry: Registry, *, host: str = "127.0.0.1", port: int = 0, task_status=None) -> None:
    """Serve only ``/metrics`` on loopback (hypercorn, trio); ``task_status.started(url)`` once listening."""
    import trio

    from sync.centre.server import serve_app

    if not _loopback(host):
        raise ValueError(f"metrics are served on a loopback address only, not {host!r}")
    await serve_app(metrics_app(registry), host=host, port=port,
                    task_status=task_status if task_status is not None else trio.TASK_STATUS_IGNORED)


# sync.centre.app mounts the ``routes`` of the modules in its EXTRA_ROUTE_MODULES: listing
# "edge.metrics" there serves the centre's /metrics.
routes = [centre_metrics_route()]
