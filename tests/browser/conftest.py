"""Fixtures of the browser tests: a centre and an enrolled counter daemon with the simulated card desk."""

from __future__ import annotations

import httpx
import pytest
import trio

from harness.demo import ZHANGSAN, start_stack, wait_for

from .test_counter_page import _ready, _require_chromium


@pytest.fixture
async def stack(tmp_path, nursery):
    """The stack, ready and online, with 张三's card in the simulated desk; ``stack.api`` talks to the counter
    with the installation token (as the HIS); the pages log in as the demo's clerk (test_counter_page.login)."""
    _require_chromium()
    s = await start_stack(nursery, tmp_path, probe_s=0.5, idle_s=0.5)
    async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
        with trio.fail_after(30):  # the counter to be ready (bundles downloaded, online)
            await wait_for(lambda: _ready(api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        s.api = api
        yield s
