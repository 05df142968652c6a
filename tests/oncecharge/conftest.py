"""One visit, one charge: the real centre and counter daemons on loopback (the demo's stack, SQLite),
with a proxy of our own that can hold the centre's replies to online settlement past the counter's
``online_timeout_s`` (the centre commits; the counter hears nothing in time)."""

from __future__ import annotations

import httpx
import pytest
import trio

demo = pytest.importorskip("harness.demo")

ITEMS = demo.ITEMS                   # ¥35.60: 2 x 阿莫西林胶囊 + 门诊诊查费
ZHANGSAN, LISI = demo.ZHANGSAN, demo.LISI
ZHANGSAN_PSN, LISI_PSN = "3303000000000001", "3303000000000002"


async def until(check, what: str, within: float = 60.0):
    with trio.fail_after(within):
        while not await check():
            await trio.sleep(0.1)


class HoldingProxy:
    """Forwards TCP to the centre. While ``hold`` names a path, an answer to a request for that path
    reaches the counter only after ``hold_s`` (the request itself passes at once, so the centre commits).
    While ``delay`` names a path, the request itself reaches the centre only after ``hold_s`` (a slow
    link: the centre sees it after the counter gave up on it)."""

    def __init__(self, target: tuple[str, int], hold_s: float = 4.0) -> None:
        self.target, self.hold_s = target, hold_s
        self.hold: set[bytes] = set()
        self.delay: set[bytes] = set()
        self.held = 0
        self.port: int | None = None

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            last = {"path": b""}
            async with upstream:
                async def up():
                    try:
                        while data := await client.receive_some(65536):
                            head = data.split(b"\r\n", 1)[0]
                            if head.startswith((b"POST ", b"GET ")):
                                last["path"] = head.split(b" ")[1]
                            if last["path"] in self.delay:
                                await trio.sleep(self.hold_s)
                            await upstream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                async def down():
                    try:
                        while data := await upstream.receive_some(65536):
                            if last["path"] in self.hold:
                                self.held += 1
                                await trio.sleep(self.hold_s)
                            await client.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(up)
                    nursery.start_soon(down)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self.handle, listeners, handler_nursery=nursery)


@pytest.fixture
async def stack(nursery, tmp_path):
    from edge.counter import CentreClient

    s = await demo.start_stack(nursery, tmp_path, simulated=True, probe_s=0.5, idle_s=0.5)
    proxy = await nursery.start(HoldingProxy(("127.0.0.1", s.centre_port)).run)
    counter = s.daemon.counter
    direct = counter.centre
    # The counter's online calls go through the proxy (signed as the daemon signs them); the uplink stays direct.
    counter.centre = CentreClient(f"http://127.0.0.1:{proxy.port}", direct._sign)
    s.proxy, s.counter = proxy, counter
    async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
        s.api = api
        await until(lambda: _status(api, "online"), "the counter to reach the centre")
        await until(lambda: _bundles(api), "the sample bundles")
        await until(lambda: _fresh(api), "a completed sync round (the offline limits need the cache's age)")
        yield s
    # The daemon runs on until the nursery ends: give it back its own client before closing the proxy's
    # (a probe in between once met a closed client and crashed the daemon in teardown).
    proxied, counter.centre = counter.centre, direct
    await proxied.aclose()
    s.centre.stop()


async def _status(api, key):
    return (await api.get("/api/status")).json()[key]


async def _fresh(api):
    return (await api.get("/api/status")).json()["cache"]["age_s"] is not None


async def _bundles(api):
    return {"policy", "catalogue", "persons", "hotlist"} <= set((await api.get("/api/status")).json()["cache"]["bundles"])


async def insert(api, who):
    await api.delete("/api/card/simulate")
    (await api.post("/api/card/simulate", json=who)).raise_for_status()
    await until(lambda: _present(api), "the card")


async def _present(api):
    return (await api.get("/api/card")).json()["present"]


async def sent_and_reconciled(stack):
    from sync.centre import reconcile

    await until(lambda: _backlog_empty(stack.api), "the backlog to be sent")
    await trio.to_thread.run_sync(reconcile.run_pending, stack.store)


async def _backlog_empty(api):
    return (await api.get("/api/status")).json()["backlog"]["count"] == 0


def balance(stack, psn_no: str) -> int:
    return stack.store.ledger.load(psn_no).balc
