"""Attacks on the child-process bundle apply (edge.cache.isolated), each from outside, with real processes.

Every case here was a finding: the child imported modules from the counter's working directory (a
``cbor2.py`` there turned a forged bundle into a reported success); a refusal naming non-ASCII text died
on an ASCII stdout and became a transient failure, retried forever; a missing cache file was created
afresh and the bundle "applied" to a file the counter does not use; a success line was believed from a
child that failed; a child that died told the clerk the local data could not be read or written.
"""

from __future__ import annotations

import os
import sys
import threading

import cbor2
import pytest

from counter.helpers import Centre
from edge.cache import Cache, CacheUnavailable
from edge.cache import isolated
from sync.bundles import BundleBadSignature, BundleMalformed, BundleStale

FAKE_OK = '{"ok": {"kind": "hotlist", "version": 99, "base": null}}'


def _script(path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_modules_in_the_working_directory_are_not_imported_by_the_child(cache, centre, tmp_path, monkeypatch):
    """The daemon runs from whatever directory it was started in; a ``cbor2.py`` (or ``edge/``) lying there
    must not run inside the child that verifies and writes bundles."""
    evil = tmp_path / "downloads"
    evil.mkdir()
    (evil / "cbor2.py").write_text(f"import os\nprint({FAKE_OK!r}, flush=True)\nos._exit(0)\n")
    monkeypatch.chdir(evil)
    before = cache.versions()
    forged = Centre().bundle("hotlist", {"cards": []}, version=5)   # signed by another key
    with pytest.raises(BundleBadSignature):
        cache.apply_bundle_isolated(forged, centre.verify_key, now_ms=9)
    assert cache.versions() == before
    good = centre.bundle("hotlist", {"cards": []})          # and the genuine next bundle still applies
    assert cache.apply_bundle_isolated(good, centre.verify_key, now_ms=9)["version"] == 2


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"},
                                 {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}])
def test_a_refusal_with_non_ascii_text_is_still_a_refusal_on_an_ascii_stdout(cache, centre, env, monkeypatch):
    """An unsigned envelope naming a Chinese kind is refused (skipped by the uplink), not a crash of the
    child (a transient failure the uplink would retry forever, holding up every message behind it)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    hostile = cbor2.dumps({"signed": cbor2.dumps({"kind": "目录\u2028{}"}), "sig": b""})
    before = cache.versions()
    with pytest.raises(BundleMalformed) as info:
        cache.apply_bundle_isolated(hostile, centre.verify_key, now_ms=9)
    assert "目录" in info.value.message
    assert cache.versions() == before


def test_a_missing_cache_file_is_not_created_afresh_by_the_child(cache, centre, tmp_path):
    """The cache file was deleted under the running counter: the child must not create a new, empty
    cache there and report the bundle applied (the counter keeps using the file it has open)."""
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    raw = centre.bundle("hotlist", {"cards": []})
    with pytest.raises(CacheUnavailable):
        cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)
    assert not (tmp_path / "cache.db").exists()


def test_a_success_line_from_a_child_that_failed_is_not_believed(cache, centre, tmp_path, monkeypatch):
    fake = _script(tmp_path / "python", f"#!/bin/sh\necho '{FAKE_OK}'\nexit 1\n")
    monkeypatch.setattr(isolated.sys, "executable", fake)
    before = cache.versions()
    with pytest.raises(CacheUnavailable, match="exit 1"):
        cache.apply_bundle_isolated(centre.bundle("hotlist", {"cards": []}), centre.verify_key, now_ms=9)
    assert cache.versions() == before


def test_a_child_killed_mid_apply_changes_nothing_and_the_next_bundle_applies(cache, centre, tmp_path, monkeypatch):
    """The child SIGKILLs itself inside the write transaction, after the catalogue's rows are written
    (kill -9 mid-apply, at a chosen point rather than after a chosen time)."""
    wrapper = _script(tmp_path / "python", "#!/bin/sh\nshift 2\n"
                      f"exec {sys.executable} -c 'import os, runpy, signal, sys\n"
                      "from edge.cache.store import Cache\n"
                      "real = Cache._apply_catalogue\n"
                      "def dying(self, c, payload, delta):\n"
                      "    real(self, c, payload, delta)\n"
                      "    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "Cache._apply_catalogue = dying\n"
                      "sys.argv = [\"isolated\"] + sys.argv[1:]\n"
                      "runpy.run_module(\"edge.cache.child\", run_name=\"__main__\")' \"$@\"\n")
    items = [{"code": f"K{i:04d}", "name": f"测试{i}", "class": "A"} for i in range(50)]
    raw = centre.bundle("catalogue", {"items": items})
    before, count, python = cache.versions(), cache.item_count(), sys.executable
    monkeypatch.setattr(isolated.sys, "executable", wrapper)
    with pytest.raises(CacheUnavailable) as info:
        cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)
    assert "-9" in info.value.message
    # The clerk is told the truth, in Chinese: nothing changed, it is retried (not "cannot read or write").
    assert info.value.retryable and "未改变" in info.value.zh and "无法读取" not in info.value.zh
    assert cache.versions() == before and cache.item_count() == count
    cache.add_notice("n-1", "outcome", {"zh": "x"}, psn_no="P0001", now_ms=10)   # the parent still writes
    monkeypatch.setattr(isolated.sys, "executable", python)
    assert cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=11)["version"] == 2
    assert cache.item_count() == 50


def test_a_state_dir_with_spaces_and_chinese_applies(centre, tmp_path):
    where = tmp_path / "state dir 柜台 -x" / "cache.db"
    c = Cache.open(where)
    try:
        for raw in centre.sample():
            c.apply_bundle_isolated(raw, centre.verify_key, now_ms=1)
        assert c.versions()["hotlist"]["version"] == 1 and c.policy() is not None
    finally:
        c.close()


ROLES = '''
import os, pathlib, runpy, sys, time
from edge.cache.store import Cache
here = pathlib.Path(__file__).parent


def wait_for(name):
    for _ in range(6000):                  # an event the test sets; bounded, never a timing
        if (here / name).exists():
            return
        time.sleep(0.005)
    raise SystemExit("never released")


if sys.argv[-1] == "1001":                 # A: holds its write transaction until released
    real = Cache._apply_catalogue

    def held(self, c, payload, delta):
        real(self, c, payload, delta)
        (here / "a-in-tx").touch()
        wait_for("go")
    Cache._apply_catalogue = held
else:                                      # B: says when it reads the versions or waits for its turn
    import fcntl
    real_flock, real_versions = fcntl.flock, Cache.versions

    def flock(fd, op):
        (here / "b-waits").touch()
        return real_flock(fd, op)

    def versions(self):
        got = real_versions(self)
        (here / "b-waits").touch()
        return got
    fcntl.flock, Cache.versions = flock, versions
sys.argv = ["isolated"] + sys.argv[1:]
runpy.run_module("edge.cache.child", run_name="__main__")
'''


def _wait_for(path) -> None:
    for _ in range(6000):
        if path.exists():
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"{path.name} never happened")


def test_two_processes_applying_at_once_never_take_the_version_backwards(cache, centre, tmp_path, monkeypatch):
    """The daemon and ``edge sync`` (or a child orphaned by a killed daemon and the restarted daemon's)
    apply to one cache file at once: full v3 is inside its transaction when full v2 arrives. v2 read the
    versions before v3 committed, so it passed as newer and then overwrote v3 with older content."""
    roles = tmp_path / "roles"
    roles.mkdir()
    (roles / "child.py").write_text(ROLES)
    wrapper = _script(roles / "python", f"#!/bin/sh\nshift 2\nexec {sys.executable} {roles / 'child.py'} \"$@\"\n")
    v3 = centre.bundle("catalogue", {"items": [{"code": f"N{i}", "name": "新", "class": "A"} for i in range(30)]},
                       version=3)
    v2 = centre.bundle("catalogue", {"items": [{"code": "OLD", "name": "旧", "class": "A"}]}, version=2)
    other = Cache.open(tmp_path / "cache.db")             # the second process's cache object
    monkeypatch.setattr(isolated.sys, "executable", wrapper)
    out: dict[str, object] = {}

    def apply(name, c, raw, now):
        try:
            out[name] = c.apply_bundle_isolated(raw, centre.verify_key, now_ms=now)
        except Exception as exc:   # noqa: BLE001 - the test looks at whatever came back
            out[name] = exc

    a = threading.Thread(target=apply, args=("v3", cache, v3, 1001))
    a.start()
    try:
        _wait_for(roles / "a-in-tx")
        b = threading.Thread(target=apply, args=("v2", other, v2, 2002))
        b.start()
        _wait_for(roles / "b-waits")
    finally:
        (roles / "go").touch()
    a.join(60)
    b.join(60)
    other.close()
    assert out["v3"] == {"kind": "catalogue", "version": 3, "base": None}
    assert isinstance(out["v2"], BundleStale), out["v2"]
    assert cache.versions()["catalogue"]["version"] == 3 and cache.item_count() == 30


HELD = '''
import os, pathlib, runpy, sys, time
from edge.cache.store import Cache
here = pathlib.Path(__file__).parent
real = Cache._apply_catalogue


def held(self, c, payload, delta):
    real(self, c, payload, delta)
    (here / "pid").write_text(str(os.getpid()))
    (here / "in-tx").touch()
    for _ in range(2000):                  # until released (never, here); bounded
        if (here / "go").exists():
            break
        time.sleep(0.005)
    (here / "finished").touch()
Cache._apply_catalogue = held
sys.argv = ["isolated"] + sys.argv[1:]
runpy.run_module("edge.cache.child", run_name="__main__")
'''


async def test_a_shutdown_during_an_apply_stops_the_child_at_once_and_changes_nothing(cache, centre, tmp_path,
                                                                                        monkeypatch):
    """SIGTERM cancels the daemon's tasks; the apply's thread must not keep the daemon up until the child
    finishes (a child that hangs would hold it for the whole TIMEOUT_S): the child is killed, nothing is
    committed, and the bundle comes again after the restart (the feed cursor did not move)."""
    import trio

    roles = tmp_path / "held"
    roles.mkdir()
    (roles / "child.py").write_text(HELD)
    wrapper = _script(roles / "python", f"#!/bin/sh\nshift 2\nexec {sys.executable} {roles / 'child.py'} \"$@\"\n")
    raw = centre.bundle("catalogue", {"items": [{"code": "NEW-1", "name": "新药", "class": "A"}]})
    before, count, python = cache.versions(), cache.item_count(), sys.executable
    monkeypatch.setattr(isolated.sys, "executable", wrapper)
    with trio.CancelScope() as shutdown:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: trio.to_thread.run_sync(
                lambda: cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)))
            for _ in range(6000):
                if (roles / "in-tx").exists():
                    break
                await trio.sleep(0.005)
            shutdown.cancel()
    assert shutdown.cancelled_caught
    assert not (roles / "finished").exists(), "the child ran on after the shutdown"
    assert not os.path.exists(f"/proc/{(roles / 'pid').read_text()}")
    assert cache.versions() == before and cache.item_count() == count
    monkeypatch.setattr(isolated.sys, "executable", python)
    assert cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=10)["version"] == 2


def test_the_child_applies_where_the_os_has_no_nice(cache, centre, tmp_path, monkeypatch):
    """Windows counters (docs/operations.md section 5) have no ``os.nice``: the child must still apply
    (there the priority is set when the parent starts it), not fail every bundle forever."""
    wrapper = _script(tmp_path / "python", "#!/bin/sh\nshift 2\n"
                      f"exec {sys.executable} -c 'import os, runpy, sys\n"
                      "del os.nice\n"
                      "sys.argv = [\"isolated\"] + sys.argv[1:]\n"
                      "runpy.run_module(\"edge.cache.child\", run_name=\"__main__\")' \"$@\"\n")
    monkeypatch.setattr(isolated.sys, "executable", wrapper)
    assert cache.apply_bundle_isolated(centre.bundle("hotlist", {"cards": []}), centre.verify_key,
                                       now_ms=9)["version"] == 2


def test_an_apply_under_a_shifted_wall_clock_goes_through(tmp_path):
    """A counter PC whose clock a clerk set back (the daemon under libfaketime, as tests/time runs it): the
    parent's wait for the child must not use clock_nanosleep (``time.sleep``, ``Popen.wait(timeout)``),
    which fails there with EINVAL; every bundle failed and was retried for ever."""
    import glob
    import shutil
    import subprocess

    from support import require

    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    require("libfaketime (Debian package faketime)", bool(shutil.which("faketime") and libs))
    rc = tmp_path / "faketime.rc"
    rc.write_text("-1d\n")
    script = tmp_path / "apply.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(os.path.dirname(os.path.dirname(__file__)))!r})
from counter.helpers import Centre
from edge.cache import Cache
centre = Centre()
cache = Cache.open({str(tmp_path / "cache.db")!r})
raws = centre.sample()
cache.apply_bundle(raws[0], centre.verify_key, now_ms=1)
print(cache.apply_bundle_isolated(raws[1], centre.verify_key, now_ms=2)["kind"])
""")
    env = {**os.environ, "LD_PRELOAD": libs[0], "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "policy", done.stdout + done.stderr
