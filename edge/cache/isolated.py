"""Bundle applies in a child process at a lower CPU priority, so the counter never waits for them.

Why a process: a full 100k-item catalogue apply is seconds of Python (verify, parse every item for the
engine, search terms, inserts). In a thread of the daemon it would hold the interpreter lock in 5 ms
slices against every settle, page and card event; in a process of its own it has its own interpreter,
and at ``nice`` +10 the kernel gives the counter's process the CPU whenever both want it. SQLite's WAL
does the rest: the daemon's readers see the last committed state throughout the apply.

Rules:

* The parent holds the cache's writer lock while the child runs: the daemon's own cache writes (the
  effects of a journaled visit, a notice) queue behind the apply on that lock, exactly as they did
  behind an in-process apply, instead of meeting SQLite's busy timeout.
* The child opens the same cache file and calls :meth:`Cache.apply_bundle`: one code path verifies and
  applies, whichever process runs it. Nothing is written unless the whole bundle verifies and applies.
* Protocol: the bundle on the child's stdin; arguments: the cache path, the pinned key (hex) and the
  time; one JSON line on stdout, ``{"ok": info}`` or ``{"error": {"code", "message"}}``. A refusal of the
  bundle tree (:class:`sync.bundles.BundleError`) or of the cache is raised again in the parent as the
  same class; anything else (the child crashed, was killed, printed nothing) is
  :class:`~edge.cache.errors.CacheUnavailable`, and the cache is as it was (the transaction did not
  commit).
* ``:memory:`` caches (tests) have no second connection: they apply in the calling thread.

Run as ``python -m edge.cache.isolated PATH KEYHEX NOW_MS < bundle`` (by :func:`apply_in_child` only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sync.bundles import BundleBadSignature, BundleBrokenChain, BundleError, BundleMalformed, BundleStale

from .errors import CacheError, CacheUnavailable

NICE = 10
TIMEOUT_S = 900          # a 100k-item catalogue applies in ~10 s on a counter PC; a hung child is killed

# The classes a child's refusal may name, by code (anything else becomes CacheUnavailable).
_ERRORS: dict[str, type[Exception]] = {cls.code: cls for cls in (
    BundleError, BundleMalformed, BundleBadSignature, BundleBrokenChain, BundleStale, CacheError, CacheUnavailable)}


def apply_in_child(path: str, raw: bytes, verify_key, *, now_ms: int) -> dict:
    """Apply one bundle to the cache file at ``path`` in a child process; returns its info or raises."""
    try:
        done = subprocess.run([sys.executable, "-m", "edge.cache.isolated", path, bytes(verify_key).hex(), str(now_ms)],
                              input=raw, capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CacheUnavailable(f"the bundle apply could not run: {exc}") from exc
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if isinstance(answer.get("ok"), dict):
        return answer["ok"]
    err = answer["error"] if isinstance(answer.get("error"), dict) else {}
    cls = _ERRORS.get(str(err.get("code")))
    if cls is not None:
        raise cls(str(err.get("message") or "bundle refused"))
    tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    raise CacheUnavailable(f"the bundle apply failed (exit {done.returncode}): {tail[0]}")


def _child(argv: list[str]) -> int:
    from nacl.signing import VerifyKey

    from .store import Cache

    os.nice(NICE)
    path, key_hex, now_ms = argv
    raw = sys.stdin.buffer.read()
    cache = Cache.open(path)
    try:
        info = cache.apply_bundle(raw, VerifyKey(bytes.fromhex(key_hex)), now_ms=int(now_ms))
    except (BundleError, CacheError) as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}, ensure_ascii=False), flush=True)
        return 1
    finally:
        cache.close()
    print(json.dumps({"ok": info}, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
