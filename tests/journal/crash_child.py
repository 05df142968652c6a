"""Zygote for the crash tests: imports the journal once, then forks one appender per command.

Run as ``python crash_child.py DB SEED_HEX DEVICE``. Commands on stdin, one per line:

    run OUTFILE ROUND   fork a child that appends forever (every 7th append also marks the outbox
                        acknowledged up to seq - 3, as the uplink would); after each append *returns* it writes
                        "<seq> <raw hex>\\n" to OUTFILE with one os.write (so a SIGKILL cannot lose a
                        line the child believed written, nor leave half a line). Replies "<pid>".
    wait PID            reap that child (the parent has SIGKILLed it). Replies "<exit status>".
    quit

Forking from a zygote keeps 50+ kills to a few seconds: a fresh interpreter per round would spend
most of its time importing. The child opens the journal itself, so a kill can also land in open().
"""

from __future__ import annotations

import os
import sys
import tempfile

from nacl.signing import SigningKey

from edge.journal import JournalStore


def append_forever(db: str, seed: bytes, device: str, out: str, round_no: str) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    store = JournalStore.open(db, signing_key=SigningKey(seed), device=device)
    i = 0
    while True:
        i += 1
        body = {"req": f"crash-{round_no}-{i}", "what": "crash test " + "x" * (i % 200)}
        entry = store.append("note", body)
        os.write(fd, f"{entry.seq} {entry.raw.hex()}\n".encode())
        if entry.seq % 7 == 0:  # the uplink's bookkeeping gets killed mid-transaction too
            store.mark_acked(entry.seq - 3)


def warm_up(seed: bytes) -> None:
    """Open, append and close a throwaway journal once, so the forked children do not each pay for
    lazy imports and first-use setup (that took ~20 ms per child, longer than many kill delays)."""
    with tempfile.TemporaryDirectory() as tmp:
        with JournalStore.open(os.path.join(tmp, "warm.db"), signing_key=SigningKey(seed), device="D-warm-1") as s:
            s.append("note", {"req": "warm", "what": "warm up"})


def main() -> None:
    db, seed_hex, device = sys.argv[1:4]
    seed = bytes.fromhex(seed_hex)
    warm_up(seed)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            return
        if cmd[0] == "run":
            pid = os.fork()
            if pid == 0:
                try:
                    append_forever(db, seed, device, cmd[1], cmd[2])
                finally:
                    os._exit(3)
            print(pid, flush=True)
        elif cmd[0] == "wait":
            _, status = os.waitpid(int(cmd[1]), 0)
            print(status, flush=True)


if __name__ == "__main__":
    main()
