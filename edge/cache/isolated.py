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
  time; one ASCII JSON line on stdout (written as bytes: no locale or ``PYTHONIOENCODING`` can break it),
  ``{"ok": info}`` with exit 0 or ``{"error": {"code", "message", "zh"}}`` with exit 1; any other pairing
  is not believed. A refusal of the bundle tree (:class:`sync.bundles.BundleError`) or of the cache is
  raised again in the parent as the same class; anything else (the child crashed, was killed, printed
  nothing) is :class:`~edge.cache.errors.CacheUnavailable` (retryable, with a Chinese text saying nothing
  changed), and the cache is as it was (the transaction did not commit).
* The child imports only what the parent runs: ``-P`` keeps the working directory off its ``sys.path``;
  the directory holding this code is added to ``PYTHONPATH``. It never creates a cache file: a cache
  deleted under the counter is ``CacheUnavailable``, not a fresh empty cache that "applied" the bundle.
* One child applies to a cache file at a time, across processes (``PATH.apply-lock``, an OS lock the
  kernel drops with the child): the version check and the commit are not one transaction.
* A cancelled caller (the daemon stopping on SIGTERM) kills the child at once and sees ``trio.Cancelled``;
  a child that outlives ``TIMEOUT_S`` is killed too.
* ``:memory:`` caches (tests) have no second connection: they apply in the calling thread.

The child is :mod:`edge.cache.child`, run as ``python -Pm edge.cache.child PATH KEYHEX NOW_MS < bundle``
(by :func:`apply_in_child` only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import trio

from sync.bundles import BundleBadSignature, BundleBrokenChain, BundleError, BundleMalformed, BundleStale
from sync.problem import Problem

from .errors import CacheError, CacheUnavailable

NICE = 10
TIMEOUT_S = 900          # a 100k-item catalogue applies in ~10 s on a counter PC; a hung child is killed
POLL_S = 0.05            # how soon a cancelled caller (shutdown) stops the child
# What the clerk reads when the child did not finish (killed, crashed, could not start): the local data is
# as it was, and the uplink applies the bundle again.
INTERRUPTED_ZH = "医保数据包未能更新（更新过程中断），本地数据未改变，稍后自动重试；多次出现请联系技术人员"

# The classes a child's refusal may name, by code (anything else becomes CacheUnavailable).
_ERRORS: dict[str, type[Problem]] = {cls.code: cls for cls in (
    BundleError, BundleMalformed, BundleBadSignature, BundleBrokenChain, BundleStale, CacheError, CacheUnavailable)}


def _child_env() -> dict[str, str]:
    """The child's environment: the parent's, with the directory that holds this very code at the end of
    ``PYTHONPATH`` (the child imports the ``edge`` and ``sync`` the parent runs, installed or not).

    The child is started with ``-P``: nothing from the working directory is importable in it (a counter
    is started from wherever; a ``cbor2.py`` in that directory would otherwise verify our bundles).
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), root) if p)
    return env


def _cancelled() -> None:
    """Raise ``trio.Cancelled`` if the task that sent this thread (``trio.to_thread.run_sync``) was cancelled."""
    try:
        trio.from_thread.check_cancelled()
    except RuntimeError:        # not a trio worker thread: nothing can cancel it
        pass


def _run(argv: list[str], raw: bytes) -> subprocess.CompletedProcess:
    """:func:`subprocess.run` with ``TIMEOUT_S``, except that a cancelled caller (the daemon shutting down)
    kills the child at once instead of waiting for it: the apply is one transaction, so a killed child
    changed nothing, and the feed cursor has not moved past the bundle (it comes again).

    The pipes are served by threads of their own (``communicate`` cannot be retried after a timeout with
    input still unwritten), and the wait polls the caller's cancellation every ``POLL_S``."""
    flags = 0
    if sys.platform == "win32":
        flags = subprocess.BELOW_NORMAL_PRIORITY_CLASS      # what os.nice does in the child elsewhere
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_child_env(), creationflags=flags) as proc:
        out, err = bytearray(), bytearray()

        def feed() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(raw)
                proc.stdin.close()
            except OSError:              # the child died before reading it all: its exit code says so
                pass

        def drain(stream, into: bytearray) -> None:
            into.extend(stream.read())

        pipes = [threading.Thread(target=feed, daemon=True),
                 threading.Thread(target=drain, args=(proc.stdout, out), daemon=True),
                 threading.Thread(target=drain, args=(proc.stderr, err), daemon=True)]
        for t in pipes:
            t.start()
        deadline = time.monotonic() + TIMEOUT_S
        # The poll interval is a wait on an Event that is never set, not time.sleep or Popen.wait(timeout):
        # those use clock_nanosleep, which fails with EINVAL under a shifted wall clock (libfaketime, as a
        # counter PC whose clock a clerk moved is tested), and then every bundle failed and was retried.
        tick = threading.Event()
        try:
            while proc.poll() is None:
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(argv, TIMEOUT_S)
                _cancelled()
                tick.wait(POLL_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            for t in pipes:
                t.join()
        return subprocess.CompletedProcess(argv, proc.returncode, bytes(out), bytes(err))


def apply_in_child(path: str, raw: bytes, verify_key, *, now_ms: int) -> dict:
    """Apply one bundle to the cache file at ``path`` in a child process; returns its info or raises."""
    try:
        done = _run([sys.executable, "-Pm", "edge.cache.child", path, bytes(verify_key).hex(), str(now_ms)], raw)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CacheUnavailable(f"the bundle apply could not run: {exc}", zh=INTERRUPTED_ZH, retryable=True) from exc
    # The answer is the child's last line, ASCII JSON; a success counts only from a child that exited 0.
    lines = done.stdout.decode("ascii", "replace").strip().split("\n")
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if done.returncode == 0 and isinstance(answer.get("ok"), dict):
        return answer["ok"]
    err = answer["error"] if done.returncode == 1 and isinstance(answer.get("error"), dict) else {}
    cls = _ERRORS.get(str(err.get("code")))
    if cls is not None:
        zh = err.get("zh")
        raise cls(str(err.get("message") or "bundle refused"), zh=zh if isinstance(zh, str) and zh else None)
    tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    raise CacheUnavailable(f"the bundle apply failed (exit {done.returncode}): {tail[0]}", zh=INTERRUPTED_ZH,
                           retryable=True)
