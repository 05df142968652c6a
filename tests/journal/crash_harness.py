"""Kill -9 an appending journal at random moments and check nothing acknowledged was lost.

Used by test_crash.py (short) and scripts/journal-soak (long). After every kill: the journal opens,
verifies end to end (signatures, seq continuity, prev chain), every entry the child reported as
appended is present with identical bytes, and the outbox is consistent (pending = acked+1..head).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from edge.journal import GENESIS, JournalStore, verify_entries

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CrashResult:
    kills: int = 0
    acknowledged: int = 0          # entries the children reported as appended
    entries: int = 0               # entries in the journal at the end
    rounds_with_appends: int = 0
    problems: list[str] = field(default_factory=list)


def run_crash_rounds(workdir: Path, *, rounds: int, max_wait_s: float = 0.04, seed: int | None = None,
                     device: str = "D-S330300001-1", full_every: int = 1, log=None) -> CrashResult:
    """``full_every``: verify the whole journal every N rounds (1 = always, as the test does); other
    rounds verify only what was appended since the last check, after checking the entry it links to
    is byte-identical (the soak uses this so that thousands of kills do not cost quadratic time)."""
    rng = random.Random(seed)
    key = SigningKey(bytes(rng.getrandbits(8) for _ in range(32)))
    db = workdir / "journal.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    zygote = subprocess.Popen([sys.executable, str(CHILD), str(db), bytes(key).hex(), device],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    result = CrashResult()
    acknowledged: dict[int, str] = {}
    checked = (0, b"")  # (seq, raw) of the last entry verified
    try:
        for n in range(rounds):
            out = workdir / f"round-{n}.out"
            zygote.stdin.write(f"run {out} {n}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            # Most rounds wait for the first append, then kill at a random moment of the append loop;
            # every fifth kills blind (it may land in open(), migration or the first transaction).
            # Waiting on the child's output, not on a fixed delay, keeps this meaningful on a loaded machine.
            if n % 5 != 4:
                _wait_for_output(out, zygote_pid=pid)
            time.sleep(rng.uniform(0, max_wait_s))
            os.kill(pid, signal.SIGKILL)
            zygote.stdin.write(f"wait {pid}\n")
            zygote.stdin.flush()
            status = int(zygote.stdout.readline())
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                result.problems.append(f"round {n}: the child ended on its own (status {status}) before the kill")
            result.kills += 1
            lines = out.read_text().splitlines() if out.exists() else []
            if lines:
                result.rounds_with_appends += 1
            for line in lines:
                seq, raw_hex = line.split()
                acknowledged[int(seq)] = raw_hex
            full = n % full_every == 0 or n == rounds - 1
            problems, checked = _check(db, key, device, acknowledged, n, None if full else checked)
            result.problems += problems
            if log:
                log(f"round {n}: {len(lines)} appends, journal has {max(acknowledged, default=0)}+ entries")
    finally:
        try:
            zygote.stdin.write("quit\n")
        finally:
            zygote.stdin.close()
            zygote.stdout.close()
            zygote.wait()
    result.acknowledged = len(acknowledged)
    with JournalStore.open(db, signing_key=key, device=device) as store:
        result.entries = store.count()
    return result


def _wait_for_output(out: Path, *, zygote_pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > 0:
            return
        time.sleep(0.0005)
    raise RuntimeError(f"appender {zygote_pid} wrote nothing in 10 s: is the journal locked?")


def _check(db: Path, key: SigningKey, device: str, acknowledged: dict[int, str], n: int,
           since: tuple[int, bytes] | None) -> tuple[list[str], tuple[int, bytes]]:
    problems: list[str] = []
    if not db.exists():
        return ([] if not acknowledged else [f"round {n}: journal file missing"]), (0, b"")
    # Open as the restarted agent would (with its key): a kill may have landed before the journal
    # recorded its identity, and that must be recoverable too.
    with JournalStore.open(db, signing_key=key, device=device) as store:
        first_seq, first_prev = 1, GENESIS
        if since is not None and since[0] > 0:
            anchor = store.get(since[0])
            if anchor is None or anchor.raw != since[1]:
                problems.append(f"round {n}: entry {since[0]} changed since it was verified")
            else:
                first_seq, first_prev = since[0] + 1, anchor.hash
        raws = list(store.raw_entries(first_seq))
        report = verify_entries(raws, key.verify_key, device=store.device, first_seq=first_seq,
                                first_prev=first_prev)
        if not report.ok:
            problems.append(f"round {n}: journal does not verify: {report.text()}")
        for seq, raw_hex in acknowledged.items():
            if seq < first_seq:
                continue  # verified in an earlier round and anchored by the byte-identical entry above
            if seq - first_seq >= len(raws):
                problems.append(f"round {n}: acknowledged entry {seq} is lost")
            elif raws[seq - first_seq].hex() != raw_hex:  # verified above: in seq order from first_seq
                problems.append(f"round {n}: acknowledged entry {seq} changed")
        head, acked = store.head()[0], store.acked_seq
        pending = [e.seq for e in store.pending(limit=10**9, max_bytes=10**12)]
        if acked > head or pending != list(range(acked + 1, head + 1)):
            problems.append(f"round {n}: outbox inconsistent: acked {acked}, head {head}, "
                            f"{len(pending)} pending from {pending[:1]}")
        last = (first_seq - 1 + len(raws), raws[-1]) if raws else since or (0, b"")
    return problems, last
