"""Peak memory of the centre's frame decoding under decompression bombs, beside a baseline.

Each case runs in a fresh child process (peak RSS, ``ru_maxrss``, only grows within a process):
the baseline decodes a normal 1 MiB frame; the bombs are an 8 KB frame declaring 256 MiB and a
tiny frame declaring 1 TiB. The bound: a bomb costs about MAX_FRAME (64 MiB) plus one chunk above
the baseline, whatever it declares. Run: ``.venv/bin/python bench/bombs.py``.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import platform
import resource


def frame(declared: int, fill: int) -> bytes:
    import zstandard

    from sync import wire

    c = zstandard.ZstdCompressor(level=3).compressobj(size=declared)
    out = bytearray()
    block = bytes(1024 * 1024)
    for _ in range(fill // len(block)):
        out += c.compress(block)
    out += c.flush()
    return wire.MAGIC + bytes((wire.VERSION, wire.ZSTD)) + bytes(out)


def case(name: str, q) -> None:

    from sync import wire

    if name == "baseline":
        raw = wire.encode({"pad": bytes(1024 * 1024)})
    elif name == "256MiB-declared":
        raw = frame(256 * 1024 * 1024, 256 * 1024 * 1024)
    else:
        raw = frame(2**40, 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        wire.decode(raw)
        outcome = "decoded"
    except wire.WireError as exc:
        outcome = exc.code
    except MemoryError:
        outcome = "MemoryError"
    q.put((name, len(raw), before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, outcome))


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for name in ("baseline", "256MiB-declared", "1TiB-declared"):
        q = ctx.Queue()
        p = ctx.Process(target=case, args=(name, q))
        p.start()
        rows.append(q.get(timeout=300))
        p.join()
    base = rows[0][3]
    when = dt.datetime.now(dt.timezone.utc)
    print(f"{when:%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, {platform.processor() or platform.machine()}")
    print("| case | frame bytes | peak RSS MiB | vs baseline | outcome |")
    print("|---|---|---|---|---|")
    for name, size, _, peak, outcome in rows:
        print(f"| {name} | {size} | {peak / 1024:.1f} | {peak / base:.2f} | {outcome} |")


if __name__ == "__main__":
    main()
