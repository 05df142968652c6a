"""Bundle applies in a child process (edge.cache.isolated): the daemon's way of applying a bundle.

The same verification and the same result as an in-process apply, the same error classes, and the cache
unchanged when the child refuses the bundle or dies; the parent's own writers wait on the cache's lock
(never on SQLite's busy timeout) while the child holds the write transaction.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from counter.helpers import Centre, big_catalogue
from edge.cache import Cache, CacheUnavailable
from edge.cache import isolated
from edge.counter.downlink import handle
from sync.bundles import BundleBadSignature, BundleMalformed, BundleStale


def _in_process_forbidden(monkeypatch) -> None:
    """Make the parent's own apply fail: whatever still applies was applied by the child."""
    def forbidden(*a, **kw):
        raise AssertionError("applied in the counter's own process")
    monkeypatch.setattr(Cache, "apply_bundle", forbidden)


async def test_a_downlink_bundle_applies_in_a_child_process(counter, centre, monkeypatch):
    raw = centre.bundle("catalogue", {"upsert": [{"code": "NEW-1", "name": "板蓝根颗粒", "class": "A"}]}, base=1)
    _in_process_forbidden(monkeypatch)
    await handle(counter, centre.verify_key, {"kind": "bundle", "id": 7, "payload": raw})
    assert counter.search("blg")[0]["med_list_codg"] == "NEW-1"
    assert counter.cache.versions()["catalogue"]["version"] == 2


def test_the_child_gives_the_same_result_as_an_in_process_apply(tmp_path, centre):
    raws = centre.sample()
    items = big_catalogue(2000)
    raws.append(centre.bundle("catalogue", {"items": items}))
    here, there = Cache.open(tmp_path / "here.db"), Cache.open(tmp_path / "there.db")
    try:
        for raw in raws:
            assert here.apply_bundle(raw, centre.verify_key, now_ms=5) == \
                there.apply_bundle_isolated(raw, centre.verify_key, now_ms=5)
        assert here.versions() == there.versions()
        assert here.item_count() == there.item_count() == 2000
        assert here.search("blg") == there.search("blg")
        assert here.policy() == there.policy()
    finally:
        here.close()
        there.close()


@pytest.mark.parametrize("make, error", [
    (lambda c: Centre().bundle("hotlist", {"cards": []}, version=5), BundleBadSignature),
    (lambda c: c.bundle("hotlist", {"cards": []}, version=1), BundleStale),
    (lambda c: b"\x00not a bundle", BundleMalformed),
])
def test_a_refusal_comes_back_as_the_same_error_and_changes_nothing(cache, centre, make, error, monkeypatch):
    raw = make(centre)
    before = cache.versions()
    _in_process_forbidden(monkeypatch)
    with pytest.raises(error) as info:
        cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)
    assert info.value.code == error.code and info.value.message
    assert cache.versions() == before


def test_a_child_that_dies_is_cache_unavailable_and_changes_nothing(cache, centre, monkeypatch):
    raw = centre.bundle("hotlist", {"cards": []})
    before = cache.versions()
    monkeypatch.setattr(isolated.sys, "executable", "/bin/false")   # the child exits 1 and prints nothing
    with pytest.raises(CacheUnavailable, match="exit 1"):
        cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)
    assert cache.versions() == before
    monkeypatch.setattr(isolated.sys, "executable", "/nonexistent/python")   # the child cannot even start
    with pytest.raises(CacheUnavailable, match="could not run"):
        cache.apply_bundle_isolated(raw, centre.verify_key, now_ms=9)
    assert cache.versions() == before


def test_the_parents_writers_wait_for_the_child_on_the_lock_not_on_sqlite(cache, centre, monkeypatch):
    """While the child holds the write transaction, a parent write queues on the cache's lock (it would
    otherwise meet SQLITE_BUSY after the busy timeout): the child is held inside its apply until the
    parent's writer is seen waiting on the lock."""
    raw = centre.bundle("hotlist", {"cards": []})
    started, release = threading.Event(), threading.Event()
    real = isolated.apply_in_child

    def held(*a, **kw):
        started.set()
        assert release.wait(30), "the test never released the child"
        return real(*a, **kw)

    monkeypatch.setattr(isolated, "apply_in_child", held)
    applier = threading.Thread(target=cache.apply_bundle_isolated, args=(raw, centre.verify_key), kwargs={"now_ms": 9})
    applier.start()
    assert started.wait(30)
    wrote = threading.Event()
    writer = threading.Thread(target=lambda: (cache.add_notice("n-1", "outcome", {"zh": "x"}, psn_no="P0001",
                                                               now_ms=10), wrote.set()))
    writer.start()
    assert not wrote.wait(0.2), "a parent write went ahead while the apply held the writer lock"
    release.set()
    applier.join(60)
    writer.join(60)
    assert wrote.is_set() and cache.versions()["hotlist"]["version"] == 2
    assert [n["kind"] for n in cache.notices_for("P0001")] == ["outcome"]


def test_the_child_runs_at_a_lower_cpu_priority(tmp_path, centre, monkeypatch):
    """The child lowers its own priority before it reads the bundle (os.nice, seen through a wrapper)."""
    seen = tmp_path / "nice"
    wrapper = tmp_path / "python"
    wrapper.write_text("#!/bin/sh\nshift 2\n"    # drop "-m edge.cache.child": run it through runpy below
                       f"exec {sys.executable} -c 'import os, runpy, sys; "
                       f"orig = os.nice; os.nice = lambda n: open(\"{seen}\", \"w\").write(str(orig(n))) and 0; "
                       f"sys.argv = [\"isolated\"] + sys.argv[1:]; "
                       f"runpy.run_module(\"edge.cache.child\", run_name=\"__main__\")' \"$@\"\n")
    wrapper.chmod(0o755)
    c = Cache.open(tmp_path / "c.db")
    try:
        monkeypatch.setattr(isolated.sys, "executable", str(wrapper))
        c.apply_bundle_isolated(centre.bundle("hotlist", {"cards": []}), centre.verify_key, now_ms=1)
    finally:
        c.close()
    assert int(seen.read_text()) == min(os.nice(0) + isolated.NICE, 19)
