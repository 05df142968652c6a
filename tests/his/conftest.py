"""The real centre and counter daemons on loopback (harness.demo.start_stack, as tests/counter's daemon
tests start them), for the HIS tests. The tests themselves speak plain HTTP and import nothing of the
project: what the fixtures hand them is a base URL and a switch for the centre."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import trio

from harness.demo import restart_centre, start_stack, stop_centre, wait_for


class Site:
    """What a HIS test may use: the counter's base URL and the centre's power switch (test setup only)."""

    def __init__(self, stack, nursery) -> None:
        self._stack, self._nursery = stack, nursery
        self.url = stack.daemon.url
        # The installation token as a HIS gets it: read from api.token in the counter's state directory.
        self.token = (stack.tmp / "edge" / "api.token").read_text().strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}

    async def stop_centre(self) -> None:
        await stop_centre(self._stack)

    async def start_centre(self) -> None:
        await restart_centre(self._nursery, self._stack)

    def ec_token(self, psn_no: str) -> str:
        """A 医保电子凭证 test token from the centre's own command (as the demo gets one)."""
        out = subprocess.run([sys.executable, "-m", "sync.centre", "ec-token", "--data-dir",
                              str(self._stack.tmp / "centre"), "--psn-no", psn_no],
                             capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.strip()


async def _ready(api: httpx.AsyncClient) -> bool:
    s = (await api.get("/api/status")).json()
    return len(s["cache"]["bundles"]) == 4 and s["cache"]["age_s"] is not None


@pytest.fixture
async def site(tmp_path, nursery):
    stack = await start_stack(nursery, tmp_path, probe_s=3600, idle_s=0.2)
    async with httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False, headers=stack.daemon.headers) as api:
        with trio.fail_after(30):   # first download of the bundles
            await wait_for(lambda: _ready(api))
    yield Site(stack, nursery)
