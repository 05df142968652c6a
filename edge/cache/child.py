"""The child process of :mod:`edge.cache.isolated`: applies one bundle to the cache file and answers.

Run as ``python -Pm edge.cache.child PATH KEYHEX NOW_MS < bundle`` by :func:`edge.cache.isolated.apply_in_child`
only; the rules (priority, protocol, one apply per file, no cache created afresh) are in that module.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sync.bundles import BundleError

from .errors import CacheError, CacheUnavailable
from .isolated import NICE
from .store import Cache


def _say(answer: dict) -> None:
    # ASCII JSON on the byte stream: whatever the locale or PYTHONIOENCODING, the line is written whole,
    # and no character in a message can split it into lines.
    sys.stdout.buffer.write(json.dumps(answer, ensure_ascii=True).encode("ascii") + b"\n")
    sys.stdout.buffer.flush()


@contextmanager
def _one_apply_at_a_time(path: str) -> Iterator[None]:
    """One apply per cache file at a time, across processes (the daemon's child and ``edge sync``'s, or a
    child orphaned by a killed daemon and the restarted daemon's): :meth:`Cache.apply_bundle` compares
    with the cached version before its write transaction, so two at once could both pass as newer and the
    older commit last. Held from before the cache is opened until after it is closed; released by the OS
    if the child dies."""
    lock = f"{path}.apply-lock"
    if sys.platform == "win32":
        import msvcrt
        with open(lock, "a+b") as f:
            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:        # LK_LOCK gives up after 10 s: keep waiting (the parent bounds the child)
                    continue
            yield
    else:
        import fcntl
        # Read-only: flock needs no write access, so a lock file left by another account (an operator's
        # `edge sync` as root) does not stop the daemon's applies.
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _child(argv: list[str]) -> int:
    if hasattr(os, "nice"):     # Windows has none: there the parent starts the child below normal priority
        os.nice(NICE)
    path, key_hex, now_ms = argv
    raw = sys.stdin.buffer.read()
    if not Path(path).is_file():
        # Cache.open would create an empty cache there: the bundle would "apply" to a file the counter
        # does not use (its own was deleted or moved under it).
        _say({"error": {"code": CacheUnavailable.code, "message": f"the cache {path} does not exist"}})
        return 1
    try:
        with _one_apply_at_a_time(path):
            return _apply(path, raw, key_hex, int(now_ms))
    except OSError as exc:
        _say({"error": {"code": CacheUnavailable.code, "message": f"the cache {path} cannot be locked: {exc}"}})
        return 1


def _apply(path: str, raw: bytes, key_hex: str, now_ms: int) -> int:
    from nacl.signing import VerifyKey

    try:
        cache = Cache.open(path)
    except CacheError as exc:
        _say({"error": {"code": exc.code, "message": exc.message, "zh": exc.zh}})
        return 1
    try:
        info = cache.apply_bundle(raw, VerifyKey(bytes.fromhex(key_hex)), now_ms=now_ms)
    except (BundleError, CacheError) as exc:
        _say({"error": {"code": exc.code, "message": exc.message, "zh": exc.zh}})
        return 1
    finally:
        cache.close()
    _say({"ok": info})
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
