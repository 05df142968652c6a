"""Prometheus metrics (prometheus_client): the edge's and the centre's numbers, the loopback-only route."""

from __future__ import annotations

import httpx
import pytest
import trio

import diag_helpers
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from edge.metrics import CONTENT_TYPE, EdgeMetrics
from sync.centre.metrics import CentreMetrics
from sync.metrics import Scraped, metrics_route, serve_metrics


def parse(text: str | bytes) -> dict[str, float]:
    """Sample lines of the exposition format -> {'name{labels}': value}, without prometheus_client's
    ``*_created`` timestamps (they say when a counter was made, not what it counts)."""
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            if not name.split("{", 1)[0].endswith("_created"):
                out[name] = float(value)
    return out


def test_text_format_and_escaping():
    reg = CollectorRegistry()
    c = Counter("x_total", "Things\nthat happened", ("code",), registry=reg)
    c.labels(code='a"b\\c').inc()
    c.labels(code="plain").inc(2.5)
    Gauge("y", "A gauge", registry=reg).set(float("inf"))
    text = generate_latest(reg).decode()
    assert "# HELP x_total Things\\nthat happened\n# TYPE x_total counter\n" in text
    assert 'x_total{code="a\\"b\\\\c"} 1.0\n' in text and 'x_total{code="plain"} 2.5\n' in text
    assert "# TYPE y gauge\ny +Inf\n" in text
    with pytest.raises(ValueError):
        c.labels(code="plain").inc(-1)
    with pytest.raises(ValueError):
        c.labels(wrong="label")
    with pytest.raises(ValueError):
        Gauge("x_total", "same name, other type", registry=reg)


def test_failing_scrape_function_does_not_break_the_page(caplog):
    reg = CollectorRegistry()
    Scraped("gauge", "broken", "reads a broken journal", lambda: 1 / 0, registry=reg)
    Counter("fine_total", "still here", registry=reg).inc()
    samples = parse(generate_latest(reg))
    assert samples == {"fine_total": 1}         # the broken gauge is left out, the rest is served
    assert "metric broken unavailable: ZeroDivisionError" in caplog.text


async def test_edge_metrics_from_a_real_journal(healthy):
    from edge.journal import JournalStore, load_device_key

    m = EdgeMetrics()
    with JournalStore.open(healthy.dir / "journal.db", signing_key=load_device_key(healthy.dir / "device.key"),
                           device=healthy.device) as journal:
        m.track_backlog(journal, clock_ms=lambda: 2_000_000_000_000)
        for entry in journal.entries():
            m.observe_entry(entry)                  # 5 offline pharmacy sales, acknowledged
        online = dict(next(journal.entries()).body, req="ONLINE-1", mode="online", acct_limit=None)
        m.observe_entry(journal.append("settlement", online, time_ms=1_999_999_000_000))
        m.card_error("card_mute")
        m.card_error("card_mute")
        samples = parse(m.render())
    assert samples['edge_settlements_total{mode="offline"}'] == 5
    assert samples['edge_settlements_total{mode="online"}'] == 1
    assert samples["edge_offline_share"] == pytest.approx(5 / 6)
    assert samples["edge_backlog_entries"] == 1 and samples["edge_backlog_oldest_age_seconds"] == 1000
    assert samples['edge_card_errors_total{code="card_mute"}'] == 2


async def test_centre_metrics_over_http_on_loopback(healthy, nursery):
    """The real centre store after a real upload, scraped through the route on a real server."""
    from sync.protocol import EntryResult

    m = CentreMetrics()
    m.track_store(healthy.centre.store)
    m.observe_results([EntryResult(1, "accepted"), EntryResult(2, "rejected", "bad_signature")])
    url = await nursery.start(lambda task_status: serve_metrics(m.registry, task_status=task_status))
    async with httpx.AsyncClient(trust_env=False) as client:
        resp = await client.get(f"{url}/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"] == CONTENT_TYPE
    samples = parse(resp.text)
    assert samples["centre_entries_total"] == 5          # what the healthy fixture uploaded
    assert samples["centre_review_queue_size"] == 0
    assert samples['centre_upload_results_total{status="rejected"}'] == 1
    assert samples["centre_upload_batches_total"] == 1
    assert "# TYPE centre_rejections_total counter" in resp.text


async def test_route_refuses_non_loopback_clients():
    from starlette.applications import Starlette

    reg = CollectorRegistry()
    Counter("a_total", "a", registry=reg).inc()
    app = Starlette(routes=[metrics_route(reg)])
    transport = httpx.ASGITransport(app=app, client=("192.168.1.20", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://counter") as client:
        assert (await client.get("/metrics")).status_code == 403
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://counter") as client:
        assert parse((await client.get("/metrics")).text) == {"a_total": 1}


async def test_serve_metrics_refuses_a_lan_address():
    with pytest.raises(ValueError, match="loopback"):
        await serve_metrics(CollectorRegistry(), host="0.0.0.0")


async def test_edge_metrics_track_a_running_counter(tmp_path, nursery):
    """The real daemon (harness.demo.start_stack): an online settlement, counted from its journal."""
    from harness.demo import ITEMS, ZHANGSAN, start_stack

    stack = await start_stack(nursery, tmp_path, idle_s=0.2)
    m = EdgeMetrics().track_counter(stack.daemon.counter)
    url = await nursery.start(lambda task_status: serve_metrics(m.render, task_status=task_status))
    async with httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False, headers=stack.daemon.headers) as api, \
            httpx.AsyncClient(trust_env=False) as scraper:
        async def synced():
            return len((await api.get("/api/status")).json()["cache"]["bundles"]) == 4
        with trio.fail_after(30):  # first download
            await diag_helpers.eventually(synced)
        before = parse((await scraper.get(f"{url}/metrics")).text)
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json={"req": "M-1", "med_type": "11", "acct_used_flag": True,
                                               "pin": "123456", "items": ITEMS})
        assert r.status_code == 200, r.text
        after = parse((await scraper.get(f"{url}/metrics")).text)
    mode = r.json()["mode"]
    key = f'edge_settlements_total{{mode="{mode}"}}'
    assert after[key] == before.get(key, 0) + 1
    assert "edge_backlog_entries" in after and "edge_offline_share" in after


def test_card_errors_counted_from_the_card_desk():
    from edge.card import CardEvent, CardMute
    from edge.counter import CardDesk

    desk = CardDesk()
    m = EdgeMetrics().track_cards(desk)
    desk.on_event(CardEvent("error", "Virtual PCD 00 00", error=CardMute("no answer")))
    desk.on_event(CardEvent("removed", "Virtual PCD 00 00"))
    samples = parse(m.render())
    assert {k: v for k, v in samples.items() if k.startswith("edge_card_errors")} == \
        {'edge_card_errors_total{code="card_mute"}': 1}
    assert samples["edge_offline_share"] == 0.0


async def test_centre_metrics_route_on_the_real_centre_app(healthy, nursery):
    """sync.centre.app's Starlette app mounts /metrics once, served on loopback."""
    from sync.centre.app import create_app
    from sync.centre.server import serve_app

    app = create_app(healthy.centre.store, healthy.centre.key)
    assert [getattr(r, "path", None) for r in app.router.routes].count("/metrics") == 1
    url = await nursery.start(lambda task_status: serve_app(app, task_status=task_status))
    async with httpx.AsyncClient(trust_env=False) as client:
        resp = await client.get(f"{url}/metrics")
    samples = parse(resp.text)
    assert resp.status_code == 200 and samples["centre_entries_total"] == 5
    assert samples["centre_review_queue_size"] == 0


async def test_counter_metrics_route_in_the_counter_api(tmp_path, nursery):
    """counter_metrics_route mounted in edge.counter.api.build_app's app over the running counter."""
    from edge.counter import build_app
    from harness.demo import ITEMS, ZHANGSAN, start_stack
    stack = await start_stack(nursery, tmp_path, idle_s=0.2)
    counter = stack.daemon.counter
    app = build_app(counter)
    inner = getattr(app, "app", app)                  # build_app wraps the Starlette app (LoopbackOnly, Guard)
    assert [getattr(r, "path", None) for r in inner.routes].count("/metrics") == 1
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as local, \
            httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False, headers=stack.daemon.headers) as api:
        async def synced():
            return len((await api.get("/api/status")).json()["cache"]["bundles"]) == 4
        with trio.fail_after(30):  # first download
            await diag_helpers.eventually(synced)
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json={"req": "M-2", "med_type": "11", "acct_used_flag": True,
                                               "pin": "123456", "items": ITEMS})
        assert r.status_code == 200, r.text
        first = await local.get("/metrics")          # the first scrape counts everything journaled so far
    assert first.status_code == 200 and first.headers["content-type"] == CONTENT_TYPE
    samples = parse(first.text)
    assert samples[f'edge_settlements_total{{mode="{r.json()["mode"]}"}}'] == 1
    assert samples["edge_backlog_entries"] >= 0


async def test_metrics_served_by_the_running_daemon_and_centre(tmp_path, nursery):
    """The counter API and the centre app both serve /metrics (loopback)."""
    from harness.demo import start_stack

    stack = await start_stack(nursery, tmp_path, idle_s=0.2)
    async with httpx.AsyncClient(trust_env=False) as client:
        edge_page = await client.get(f"{stack.daemon.url}/metrics")
        centre_page = await client.get(f"{stack.centre.url}/metrics")
    assert edge_page.status_code == 200 and "# TYPE edge_settlements_total counter" in edge_page.text
    assert "edge_backlog_entries" in parse(edge_page.text)
    assert centre_page.status_code == 200 and "centre_review_queue_size" in parse(centre_page.text)
