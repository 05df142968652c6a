"""Serving the centre: hypercorn's trio worker, the store, and background tasks, in one nursery.

``await nursery.start(run_centre, store, bundle_key, host=..., port=0)`` returns the base URL
(``http://127.0.0.1:PORT``) once the socket listens. Background tasks: each function in
:data:`BACKGROUND` (``async def background(store, *, task_status)``) is started in the same nursery;
today the reconciler. Plain imports: a centre that cannot reconcile does not start.
"""

from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from sync.centre import publish, reconcile
from sync.centre.app import create_app
from sync.centre.verify import Verifier

log = logging.getLogger("sync.centre")
BACKGROUND = (reconcile.background,)


async def serve_app(app, *, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
                    keyfile: str | None = None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; ``task_status.started(base_url)`` once listening. With
    ``certfile`` and ``keyfile`` (PEM) it serves TLS only (the URL is https://): hypercorn then
    refuses anything below TLS 1.2 and never answers plain HTTP on that port."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    if certfile or keyfile:
        if not (certfile and keyfile):
            raise ValueError("TLS needs both a certificate file and its key file")
        config.certfile, config.keyfile = certfile, keyfile
    config.accesslog = None
    config.errorlog = log
    config.keep_alive_timeout = 30
    config.graceful_timeout = 1

    async def started_binds(task_status=trio.TASK_STATUS_IGNORED):
        await serve(app, config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started_binds)
        task_status.started(binds[0])


async def run_centre(store, bundle_key, *, host: str = "127.0.0.1", port: int = 0, background: bool = True,
                     verify_processes: int = 0, app_options: dict | None = None, certfile: str | None = None,
                     keyfile: str | None = None, persons_every_s: float | None = None,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the centre over ``store`` until cancelled. ``verify_processes`` > 0 verifies entries in
    that many worker processes (see :mod:`sync.centre.verify`), else in worker threads."""
    verifier = Verifier(processes=verify_processes) if verify_processes > 0 else None
    try:
        app = create_app(store, bundle_key, verifier=verifier, **(app_options or {}))
        async with trio.open_nursery() as nursery:
            if background:
                for fn in BACKGROUND:
                    await nursery.start(fn, store)
                # Persons from the ledger once reconciliation has moved it (their reflects_seq tells each
                # counter which of its own entries are in the figures): needs the bundle key.
                await nursery.start(partial(publish.persons_background, store, bundle_key,
                                            interval=persons_every_s or publish.PERSONS_EVERY_S))
            url = await nursery.start(partial(serve_app, app, host=host, port=port, certfile=certfile,
                                              keyfile=keyfile))
            log.info("centre: listening on %s (store: %s)", url, store.backend)
            task_status.started(url)
    finally:
        if verifier is not None:
            verifier.close()


class RunningCentre:
    """A centre started by :func:`start_centre`: ``url``, ``store``, ``key``; ``stop()`` cancels it."""

    def __init__(self, store, key, url: str, scope: trio.CancelScope) -> None:
        self.store, self.key, self.url, self._scope = store, key, url, scope

    def stop(self) -> None:
        self._scope.cancel()


async def start_centre(nursery, store, key=None, *, host: str = "127.0.0.1", port: int = 0,
                       background: bool = False, verify_processes: int = 0, certfile: str | None = None,
                       keyfile: str | None = None, persons_every_s: float | None = None,
                       **app_options) -> RunningCentre:
    """Start a centre in ``nursery`` (tests, benches, demos); returns once it listens."""
    from nacl.signing import SigningKey

    key = key or SigningKey.generate()
    scope = trio.CancelScope()

    async def runner(task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await run_centre(store, key, host=host, port=port, background=background, app_options=app_options,
                             verify_processes=verify_processes, certfile=certfile, keyfile=keyfile,
                             persons_every_s=persons_every_s, task_status=task_status)

    url = await nursery.start(runner)
    return RunningCentre(store, key, url, scope)
