"""A non-sticky TCP load balancer of our own, for tests of the centre run as several workers.

Every client connection goes to a worker picked at random (no stickiness, no health checks); a
client that opens one connection per request (httpx with keep-alive off) thus sends each request to
a random worker, as a round-robin balancer in front of several machines does::

    lb = Balancer([("127.0.0.1", 8701), ("127.0.0.1", 8702)])
    await nursery.start(lb.run)
    # point the edges at http://127.0.0.1:{lb.port}; lb.counts says how many went where
"""

from __future__ import annotations

import random

import trio


class Balancer:
    def __init__(self, targets: list[tuple[str, int]], *, seed: int = 1) -> None:
        self.targets = list(targets)
        self.rng = random.Random(seed)
        self.counts = [0] * len(self.targets)
        self.port: int | None = None

    async def handle(self, client: trio.SocketStream) -> None:
        i = self.rng.randrange(len(self.targets))
        self.counts[i] += 1
        try:
            upstream = await trio.open_tcp_stream(*self.targets[i])
        except OSError:
            await client.aclose()
            return

        async def pump(src, dst):
            try:
                while data := await src.receive_some(65536):
                    await dst.send_all(data)
                await dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with client, upstream:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, upstream)
                nursery.start_soon(pump, upstream, client)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self.handle, listeners)
