"""A small TCP proxy of our own that breaks a share of connections (chaos tests of the uplink).

Used by tests/sync (the fault test) and usable by hand between an edge and a centre::

    proxy = await nursery.start(FaultProxy(("127.0.0.1", 8700), fault_rate=0.3).run)
    # point the edge at http://127.0.0.1:{proxy.port}
"""

from __future__ import annotations

import random
import socket
import struct

import trio

class FaultProxy:
    """Forwards TCP connections to ``target`` (host, port); ``fault_rate`` of them are broken:

    drop      close the client's connection at once (nothing reaches the centre)
    reset     forward the request, then abort both sides with RST (the centre may have committed)
    delay     hold the request back for ``delay_s`` (longer than the uplink waits)
    truncate  forward the request, pass back only part of the answer, then close
    """

    MODES = ("drop", "reset", "delay", "truncate")

    def __init__(self, target, *, fault_rate=0.3, delay_s=1.5, seed=1):
        self.target = target
        self.fault_rate = fault_rate
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        self.counts = {m: 0 for m in ("pass", *self.MODES)}
        self.port = None

    def pick(self):
        mode = self.rng.choice(self.MODES) if self.rng.random() < self.fault_rate else "pass"
        self.counts[mode] += 1
        return mode

    @staticmethod
    def _rst(stream):
        try:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    async def handle(self, client):
        mode = self.pick()
        async with client:
            if mode == "drop":
                return
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            async with upstream:
                async def pump(src, dst, limit=None):
                    sent = 0
                    try:
                        while True:
                            data = await src.receive_some(65536)
                            if not data:
                                break
                            if limit is not None and sent + len(data) > limit:
                                await dst.send_all(data[: max(0, limit - sent)])
                                return
                            await dst.send_all(data)
                            sent += len(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    if limit is None:
                        try:  # pass the half-close on, so the server ends the connection too
                            await dst.send_eof()
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            pass

                if mode == "delay":
                    await trio.sleep(self.delay_s)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, client, upstream)
                    if mode == "reset":
                        await trio.sleep(0.02)  # let the request through first
                        self._rst(client)
                        self._rst(upstream)
                        nursery.cancel_scope.cancel()
                    elif mode == "truncate":
                        await pump(upstream, client, limit=self.rng.randrange(1, 200))
                        nursery.cancel_scope.cancel()
                    else:
                        await pump(upstream, client)
                        nursery.cancel_scope.cancel()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self.handle, listeners, handler_nursery=nursery)
