"""Entry verification for the upload handler, in parallel: worker threads or worker processes.

Verifying an entry is ~60 µs of Ed25519 (PyNaCl releases the GIL) plus ~60 µs of CBOR decoding and
the canonical-encoding check (holds the GIL). Threads overlap only the first part; worker processes
(``centre run --verify-processes N``) overlap both, at the cost of shipping the entry bytes to the
worker and a small result back. Either way the store transaction that follows is the same.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping

import trio
from nacl.signing import VerifyKey

from sync.centre import ingest

CHUNK = 128


@dataclass(frozen=True, slots=True)
class Verified:
    """What the store needs of an entry that passed step 1 (an :class:`Entry` has the same fields)."""

    seq: int
    prev: bytes
    kind: str
    time: int
    hash: bytes
    raw: bytes
    body: Mapping[str, Any]  # only psn_no and req: the indexed columns


def _check_chunk(items: list, device: str, pubkey: bytes) -> list[tuple]:
    """Worker-process side: compact results, no Entry objects (they would be pickled back)."""
    out: list[tuple] = []
    for c in ingest.check_entries(items, device, VerifyKey(pubkey)):
        if c.entry is None:
            out.append((c.seq, c.code, c.detail))
        else:
            e = c.entry
            body = {k: e.body[k] for k in ("psn_no", "req") if isinstance(e.body.get(k), str)}
            out.append((c.seq, None, "", e.prev, e.kind, e.time, e.hash, body))
    return out


class Verifier:
    """``await verifier.check(items, device, verify_key) -> list[ingest.Checked]``."""

    def __init__(self, *, processes: int = 0, threads: int = 2) -> None:
        self.processes = processes
        self._limiter = trio.CapacityLimiter(max(1, threads if processes == 0 else processes * 2))
        self._pool = None
        if processes > 0:
            # forkserver: workers never inherit the server's threads or sockets
            self._pool = ProcessPoolExecutor(max_workers=processes,
                                             mp_context=multiprocessing.get_context("forkserver"))

    async def check(self, items: list, device: str, verify_key: VerifyKey) -> list[ingest.Checked]:
        chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
        results: list = [None] * len(chunks)

        async def one(i: int) -> None:
            if self._pool is None:
                results[i] = await trio.to_thread.run_sync(ingest.check_entries, chunks[i], device, verify_key,
                                                           limiter=self._limiter)
                return
            fut = self._pool.submit(_check_chunk, chunks[i], device, bytes(verify_key))
            try:
                rows = await trio.to_thread.run_sync(fut.result, limiter=self._limiter, abandon_on_cancel=True)
            finally:
                fut.cancel()
            out = []
            for (seq, raw), r in zip(chunks[i], rows):  # results come back in the order sent
                if r[1] is not None:
                    out.append(ingest.Checked(seq, raw, None, r[1], r[2]))
                else:
                    _, _, _, prev, kind, time, h, body = r
                    out.append(ingest.Checked(seq, raw, Verified(seq, prev, kind, time, h, raw, body)))
            results[i] = out

        async with trio.open_nursery() as nursery:
            for i in range(len(chunks)):
                nursery.start_soon(one, i)
        return [c for chunk in results for c in chunk]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
