"""The centre's Prometheus metrics (prometheus_client, one ``CollectorRegistry`` per app).

Read from the store at scrape time (so they survive restarts and agree with the database): entries
held (the ingest rate is ``rate(centre_entries_total[5m])``), rejections by code, the review queue.
Counted in this process as uploads commit: per-entry results by status and batches.

Several workers: the values read from the store are DATABASE-WIDE (every worker reports the same
number; take max(), never sum() over instances); the counters of this process are PER WORKER (sum()
them). The HELP text of each says which, and ``centre_metric_scope{metric, scope}`` (value 1) lists
it for dashboards and alert rules; the names stay as they were, so existing dashboards keep working.
:func:`sync.centre.app.create_app` builds one and serves it at ``/metrics`` (loopback only, via
:func:`sync.metrics.metrics_route`).
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest

from sync.centre import review
from sync.metrics import Scraped, metrics_route


class CentreMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.results = Counter("centre_upload_results_total", "Per-entry upload results in this process, by status "
                               "(per worker: sum over instances)", ("status",), registry=r)
        self.batches = Counter("centre_upload_batches_total", "Upload batches committed by this process "
                               "(per worker: sum over instances)", registry=r)
        self._scopes = {"centre_upload_results_total": "worker", "centre_upload_batches_total": "worker"}
        Scraped("gauge", "centre_metric_scope", "1 for each centre metric: scope=worker (this process; sum over "
                "instances) or scope=database (the same on every worker; do not sum)",
                lambda: {(m, sc): 1 for m, sc in self._scopes.items()}, ("metric", "scope"), registry=r)

    def track_store(self, store) -> "CentreMetrics":
        """Read entries, rejections and the review queue from a sync.centre Store at scrape time."""
        def rejections() -> dict[str, int]:
            by_code: dict[str, int] = {}
            for row in store.rejections():
                by_code[str(row["code"])] = by_code.get(str(row["code"]), 0) + 1
            return by_code

        r = self.registry
        db = " (database-wide: the same on every worker; do not sum over instances)"
        Scraped("counter", "centre_entries_total", "Journal entries the centre holds; rate() of it is the ingest rate"
                + db, store.entry_count, registry=r)
        Scraped("counter", "centre_rejections_total", "Entries rejected at ingest, by code" + db, rejections, ("code",),
                registry=r)
        Scraped("gauge", "centre_review_queue_size", "Full-payment claims waiting for a reviewer" + db,
                lambda: len(review.claims(store)), registry=r)
        Scraped("gauge", "centre_reconcile_queue_size", "Stored entries waiting for reconciliation" + db,
                store.recon.queue_length, registry=r)
        self._scopes.update({m: "database" for m in ("centre_entries_total", "centre_rejections_total",
                                                     "centre_review_queue_size", "centre_reconcile_queue_size")})
        return self

    def observe_results(self, results: Iterable) -> None:
        """Count one committed batch: ``results`` items have ``.status`` (sync.protocol.EntryResult)."""
        self.batches.inc()
        for res in results:
            self.results.labels(status=str(getattr(res, "status", "unknown"))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def route(self, path: str = "/metrics"):
        return metrics_route(self.registry, path)
