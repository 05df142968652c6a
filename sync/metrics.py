"""Prometheus plumbing shared by the counter and the centre: scrape-time collectors and ``/metrics``.

Both apps build their metrics on prometheus_client, each over its own ``CollectorRegistry`` (never
the library's global one: tests and the two apps in one process must not share numbers). The
counter's metrics are :mod:`edge.metrics`, the centre's :mod:`sync.centre.metrics`; this module holds
only what both use:

* :class:`Scraped`: a counter or gauge whose value a function reads at scrape time (a row count,
  a backlog); a function that raises leaves its metric out of that scrape and is logged, so a broken
  journal or database never breaks ``/metrics``;
* :func:`metrics_route`: the Starlette route, loopback clients only (the counter API may listen on
  the LAN for a POS; patients' visit counts are not for the LAN);
* :func:`serve_metrics`: ``/metrics`` alone on a loopback port (hypercorn, trio).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("sync.metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST

Render = Callable[[], bytes]


class Scraped(Collector):
    """``kind`` ("counter" or "gauge") ``name`` read by ``fn`` at scrape time: a number, or for
    labelled metrics ``{label value (or tuple of them): number}``. A counter's function must never go
    down (e.g. the row count of an append-only table)."""

    def __init__(self, kind: str, name: str, help: str, fn: Callable[[], Any], labelnames: Iterable[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        if kind not in ("counter", "gauge"):
            raise ValueError(f"a scraped metric is a counter or a gauge, not {kind!r}")
        self.kind, self.name, self.help, self.fn = kind, name, help, fn
        self.labelnames = tuple(labelnames)
        if registry is not None:
            registry.register(self)

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        return GaugeMetricFamily(self.name, self.help, labels=self.labelnames)

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        try:
            got = self.fn()
        except Exception as exc:  # a broken source: leave this metric out, serve the rest
            log.warning("metric %s unavailable: %s: %s", self.name, type(exc).__name__, exc)
            return []
        family = self._family()
        if isinstance(got, Mapping):
            for key, value in sorted(got.items()):
                labels = list(key) if isinstance(key, tuple) else [str(key)]
                family.add_metric(labels, value)
        else:
            family.add_metric([], got)
        return [family]


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def metrics_route(source: CollectorRegistry | Render, path: str = "/metrics"):
    """A Starlette Route serving a registry (or a function giving the exposition bytes); 403 to any
    client not on loopback. Rendering reads SQLite/PostgreSQL, so it runs in a worker thread."""
    import trio
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    produce: Render = (lambda: generate_latest(source)) if isinstance(source, CollectorRegistry) else source

    async def endpoint(request):
        client = request.client.host if request.client else None
        if not loopback(client):
            return PlainTextResponse("metrics are served to 127.0.0.1 only\n", status_code=403)
        return Response(await trio.to_thread.run_sync(produce), media_type=CONTENT_TYPE)

    return Route(path, endpoint, methods=["GET"])


async def serve_metrics(source: CollectorRegistry | Render, *, host: str = "127.0.0.1", port: int = 0,
                        task_status=None) -> None:
    """Serve only ``/metrics`` on loopback; ``task_status.started(base_url)`` once listening."""
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from starlette.applications import Starlette

    if not loopback(host):
        raise ValueError(f"metrics are served on a loopback address only, not {host!r}")
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1
    app = Starlette(routes=[metrics_route(source)])
    status = task_status if task_status is not None else trio.TASK_STATUS_IGNORED

    async def bound(task_status=trio.TASK_STATUS_IGNORED):
        await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(bound)
        status.started(binds[0])
