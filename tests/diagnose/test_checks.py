"""Each check against a healthy counter, then with one thing broken on purpose."""

from __future__ import annotations

import os
import time

import trio

import diag_helpers
from edge.diagnose import Context, run

HOUR_MS = 3_600_000


def ctx_for(state, **kw) -> Context:
    # The daemon is down in these tests: point at a port nothing listens on, never at whatever
    # another engineer's agent may be serving on the default port.
    return Context(state_dir=state.dir, daemon_url=kw.pop("daemon_url", diag_helpers.dead_url()), **kw)


async def test_healthy_counter_every_local_and_centre_check_ok(healthy):
    report = await run(ctx_for(healthy), only=["device_key", "enrolment", "journal", "backlog", "bundles", "disk",
                                             "centre_dns", "centre_tcp", "centre_tls", "centre_signed", "clock"])
    found = report.by_check()
    assert {k: f.status for k, f in found.items()} == {k: "ok" for k in found}, report.to_json()
    assert report.exit_code == 0
    assert found["journal"].data["verified"] == 5
    assert found["backlog"].data["unsent"] == 0 and found["backlog"].data["acked_seq"] == 5
    assert found["centre_signed"].data["high_water"] == 5
    assert found["enrolment"].data["device"] == healthy.device
    assert set(found["bundles"].data["versions"]) == {"catalogue", "policy", "persons", "hotlist"}


async def test_wrong_key_permissions(healthy):
    os.chmod(healthy.dir / "device.key", 0o644)
    report = await run(ctx_for(healthy), only=["device_key"])
    f = report.by_check()["device_key"]
    assert f.status == "fail" and "mode 644" in f.finding
    assert "chmod 600" in f.next_step
    assert report.exit_code == 2


async def test_missing_key_says_enrol(healthy):
    (healthy.dir / "device.key").unlink()
    report = await run(ctx_for(healthy), only=["device_key", "centre_signed"])
    found = report.by_check()
    assert found["device_key"].status == "fail" and "edge enroll" in found["device_key"].next_step
    assert found["centre_signed"].status == "fail"
    assert report.exit_code == 2


async def test_clock_ten_minutes_off(healthy):
    ahead = lambda: time.time_ns() // 1_000_000 + 10 * 60_000  # noqa: E731 - the PC's clock, set wrong
    report = await run(ctx_for(healthy, clock_ms=ahead), only=["clock", "centre_signed"])
    found = report.by_check()
    assert found["clock"].status == "fail"
    assert 9.9 * 60_000 <= found["clock"].data["skew_ms"] <= 10.1 * 60_000
    assert "ahead of" in found["clock"].finding
    # The centre itself refuses the signed request: diagnose names the clock as the fix.
    assert found["centre_signed"].status == "fail" and found["centre_signed"].data["code"] == "stale_request"
    assert "clock" in found["centre_signed"].next_step
    assert report.exit_code == 2


async def test_clock_two_minutes_off_is_a_warning(healthy):
    behind = lambda: time.time_ns() // 1_000_000 - 2 * 60_000  # noqa: E731
    report = await run(ctx_for(healthy, clock_ms=behind), only=["clock"])
    assert report.by_check()["clock"].status == "warn" and "behind" in report.by_check()["clock"].finding
    assert report.exit_code == 1


async def test_corrupted_journal_row(healthy):
    diag_helpers.corrupt_entry(healthy.dir / "journal.db", 3)
    before = (healthy.dir / "journal.db").read_bytes()
    report = await run(ctx_for(healthy), only=["journal"])
    f = report.by_check()["journal"]
    assert f.status == "fail"
    assert f.data["first_bad_seq"] == 3 and f.data["reason"] in ("malformed", "bad_signature")
    assert "support-bundle" in f.next_step
    assert report.exit_code == 2
    # Diagnostics are read-only: the damaged journal is left exactly as found, for the technician.
    assert (healthy.dir / "journal.db").read_bytes() == before


async def test_full_backlog(healthy):
    from edge.journal import JournalStore, load_device_key

    old = time.time_ns() // 1_000_000 - 96 * HOUR_MS
    with JournalStore.open(healthy.dir / "journal.db", signing_key=load_device_key(healthy.dir / "device.key"),
                           device=healthy.device) as journal:
        diag_helpers.fill_journal(journal, 40, time_ms=old)
    report = await run(ctx_for(healthy), only=["backlog"])
    f = report.by_check()["backlog"]
    assert f.status == "fail"
    assert f.data["unsent"] == 40 and f.data["acked_seq"] == 5 and f.data["head_seq"] == 45
    assert f.data["limit_hours"] == 72 and "96 h" in f.finding
    assert report.exit_code == 2


async def test_recent_backlog_is_ok_and_an_hour_old_one_warns(healthy):
    from edge.journal import JournalStore, load_device_key

    with JournalStore.open(healthy.dir / "journal.db", signing_key=load_device_key(healthy.dir / "device.key"),
                           device=healthy.device) as journal:
        diag_helpers.fill_journal(journal, 2)
        report = await run(ctx_for(healthy), only=["backlog"])
        assert report.by_check()["backlog"].status == "ok" and report.by_check()["backlog"].data["unsent"] == 2
        diag_helpers.fill_journal(journal, 1, time_ms=time.time_ns() // 1_000_000 - 2 * HOUR_MS)
    report = await run(ctx_for(healthy), only=["backlog"])
    assert report.by_check()["backlog"].status == "warn" and report.exit_code == 1


async def test_stale_bundles(healthy):
    now = time.time_ns() // 1_000_000
    (healthy.dir / "cache.db").unlink()
    diag_helpers.publish_sample_bundles(healthy.dir, healthy.centre.key, now, refreshed_ms=now - 100 * HOUR_MS)
    report = await run(ctx_for(healthy), only=["bundles", "last_sync"])
    found = report.by_check()
    assert found["bundles"].status == "fail"
    assert "100 h" in found["bundles"].finding and found["bundles"].data["max_offline_hours"] == 72
    assert found["last_sync"].status == "fail" and found["last_sync"].data["source"] == "cache"
    assert report.exit_code == 2


async def test_bundles_past_half_the_limit_warn(healthy):
    now = time.time_ns() // 1_000_000
    (healthy.dir / "cache.db").unlink()
    diag_helpers.publish_sample_bundles(healthy.dir, healthy.centre.key, now, refreshed_ms=now - 40 * HOUR_MS)
    report = await run(ctx_for(healthy), only=["bundles"])
    assert report.by_check()["bundles"].status == "warn" and report.exit_code == 1


async def test_no_cache_and_no_journal(tmp_path):
    report = await run(Context(state_dir=tmp_path / "empty"), only=["bundles", "journal", "backlog", "enrolment"])
    found = report.by_check()
    assert all(f.status == "fail" for f in found.values())
    assert "edge enroll" in found["enrolment"].next_step
    # Nothing was created by looking.
    assert not (tmp_path / "empty").exists()


async def test_centre_unreachable_names_the_layer(healthy):
    healthy.centre.stop()
    await trio.sleep(0.1)  # let hypercorn close its listening socket
    report = await run(ctx_for(healthy), only=["centre_dns", "centre_tcp", "centre_tls", "centre_signed", "clock"])
    found = report.by_check()
    assert found["centre_dns"].status == "ok"          # 127.0.0.1: the name is fine
    assert found["centre_tcp"].status == "fail" and "cannot connect" in found["centre_tcp"].finding
    assert found["centre_signed"].status == "fail"
    assert found["clock"].status == "warn"             # cannot compare, not a clock problem
    assert report.exit_code == 2


async def test_daemon_down(tmp_path):
    with trio.socket.socket() as s:   # a port nothing listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = await run(Context(state_dir=tmp_path, daemon_url=f"http://127.0.0.1:{port}"), only=["daemon"])
    f = report.by_check()["daemon"]
    assert f.status == "fail" and "not running" in f.finding and "systemctl start counter-edge" in f.next_step
    assert report.exit_code == 2


async def test_journal_verification_newest_first_within_a_budget(healthy, monkeypatch):
    from edge.diagnose import _journal
    from edge.journal import JournalStore, load_device_key

    with JournalStore.open(healthy.dir / "journal.db", signing_key=load_device_key(healthy.dir / "device.key"),
                           device=healthy.device) as journal:
        diag_helpers.fill_journal(journal, 3)          # seq 6..8 unsent, 1..5 acknowledged
    monkeypatch.setattr(_journal, "VERIFY_TAIL", 2)    # recent part: 4..8, then the older 1..3
    report = await run(ctx_for(healthy), only=["journal"])
    f = report.by_check()["journal"]
    assert f.status == "ok" and f.data["verified"] == 8 and f.data["complete"] is True

    diag_helpers.corrupt_entry(healthy.dir / "journal.db", 2)   # damage in the older, acknowledged part
    f = (await run(ctx_for(healthy), only=["journal"])).by_check()["journal"]
    assert f.status == "fail" and f.data["first_bad_seq"] == 2

    monkeypatch.setattr(_journal, "VERIFY_BUDGET_S", 0)          # no time at all: say so, do not fail
    report = await run(ctx_for(healthy), only=["journal"])
    f = report.by_check()["journal"]
    assert f.status == "warn" and "edge journal verify" in f.next_step and report.exit_code == 1


async def test_journal_file_that_is_not_a_database(healthy):
    path = healthy.dir / "journal.db"
    for extra in ("-wal", "-shm"):
        (healthy.dir / f"journal.db{extra}").unlink(missing_ok=True)
    path.write_bytes(b"this is not SQLite at all" * 100)
    report = await run(ctx_for(healthy), only=["journal", "backlog"])
    found = report.by_check()
    assert found["journal"].status == "fail" and found["backlog"].status == "fail"
    assert "cannot be read" in found["journal"].finding and "sudo" in found["journal"].next_step
    assert path.read_bytes() == b"this is not SQLite at all" * 100 and report.exit_code == 2


async def test_quarantined_entries_warn(healthy):
    from edge.journal import JournalStore, load_device_key

    with JournalStore.open(healthy.dir / "journal.db", signing_key=load_device_key(healthy.dir / "device.key"),
                           device=healthy.device) as journal:
        diag_helpers.fill_journal(journal, 2)
        journal.quarantine(6, "bad_signature", "rejected by the centre")
    report = await run(ctx_for(healthy), only=["backlog"])
    f = report.by_check()["backlog"]
    assert f.status == "warn" and "rejected 1 entries (seq 6)" in f.finding
    assert f.data["quarantined"] == [{"seq": 6, "code": "bad_signature"}] and f.data["unsent"] == 1
    assert report.exit_code == 1


async def test_untrusted_certificate_fails_tls(healthy, tmp_path, nursery):
    """A centre (or an interception proxy) with a certificate this PC does not trust."""
    import shutil
    import ssl
    import subprocess

    import support

    openssl = shutil.which("openssl")
    support.require("the openssl command (Debian package openssl)", openssl is not None)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(stream):
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError:
            pass   # the client refused our certificate: that is the point
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, server_ctx)
    port = listeners[0].transport_listener.socket.getsockname()[1]
    report = await run(ctx_for(healthy, centre_url=f"https://127.0.0.1:{port}"), only=["centre_tls"])
    f = report.by_check()["centre_tls"]
    assert f.status == "fail" and "CERTIFICATE_VERIFY_FAILED" in f.finding.upper().replace(" ", "_")
    assert "date and time" in f.next_step
    assert report.exit_code == 2


async def test_disk_nearly_full(healthy, monkeypatch):
    # The real free space of this disk, against thresholds moved above it: as if the disk were full.
    from edge.diagnose import _local

    report = await run(ctx_for(healthy), only=["disk"])
    total = report.by_check()["disk"].data["total_bytes"]   # free space moves (others write); the size does not
    assert report.by_check()["disk"].data["journal_bytes"] > 0
    monkeypatch.setattr(_local, "DISK_WARN_BYTES", total + 1)
    assert (await run(ctx_for(healthy), only=["disk"])).by_check()["disk"].status == "warn"
    monkeypatch.setattr(_local, "DISK_FAIL_BYTES", total + 1)
    report = await run(ctx_for(healthy), only=["disk"])
    f = report.by_check()["disk"]
    assert f.status == "fail" and "Never delete files in the state directory" in f.next_step
    assert report.exit_code == 2


async def test_damaged_device_json(healthy):
    (healthy.dir / "device.json").write_text("{not json", encoding="utf-8")
    report = await run(ctx_for(healthy), only=["enrolment", "centre_tcp"])
    found = report.by_check()
    assert found["enrolment"].status == "fail" and "damaged" in found["enrolment"].finding
    assert "do not re-enrol" in found["enrolment"].next_step
    assert found["centre_tcp"].status == "fail"        # no centre URL to probe any more
    assert report.exit_code == 2


async def test_config_with_a_typo(healthy):
    (healthy.dir / "edge.toml").write_text("[counter]\nprot = 8765\n", encoding="utf-8")
    report = await run(ctx_for(healthy), only=["config"])
    f = report.by_check()["config"]
    assert f.status == "fail" and "prot" in f.finding and report.exit_code == 2
    (healthy.dir / "edge.toml").write_text("[counter]\nport = 8799\n", encoding="utf-8")
    f = (await run(ctx_for(healthy), only=["config"])).by_check()["config"]
    assert f.status == "ok" and f.data["port"] == 8799
