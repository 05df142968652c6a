"""Deploying N workers on one PostgreSQL: `centre migrate` first, then workers started together all
start; without it they refuse with a message naming `centre migrate` (none dies with a traceback);
a worker with another bundle key refuses; simultaneous enrolments of one site get distinct numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from nacl.signing import SigningKey

from sync.centre.store import Store

ROOT = Path(__file__).resolve().parents[2]


def centre(*args, key: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "sync.centre", *args, "--data-dir", str(data), "--bundle-key", str(key)]


def start_workers(n: int, url: str, key: Path, tmp: Path) -> list[subprocess.Popen]:
    return [subprocess.Popen(centre("run", "--db", url, "--port", "0", key=key, data=tmp / f"w{i}"),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
            for i in range(n)]


def wait_listening(p: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if "listening on" in line:
            return line
        if not line and p.poll() is not None:
            break
    raise AssertionError(f"worker did not start: rc={p.poll()} stderr={p.stderr.read() if p.stderr else ''}")


def key_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(bytes(SigningKey.generate()))
    path.chmod(0o600)
    return path


def test_four_workers_refuse_an_unmigrated_database_then_all_start_after_migrate(pg_url, tmp_path):
    key = key_file(tmp_path, "bundle.key")
    procs = start_workers(4, pg_url, key, tmp_path)
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2, err
        assert "centre migrate" in err and "Traceback" not in err

    done = subprocess.run(centre("migrate", "--db", pg_url, key=key, data=tmp_path / "deploy"), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "scale-001-recon-queue" in done.stdout and "Traceback" not in done.stderr

    procs = start_workers(4, pg_url, key, tmp_path)
    try:
        for p in procs:
            assert "listening on" in wait_listening(p)
        # A fifth worker given another key refuses: edges pinned the recorded one.
        other = key_file(tmp_path, "other.key")
        bad = subprocess.run(centre("run", "--db", pg_url, "--port", "0", key=other, data=tmp_path / "w9"),
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "centre_key_mismatch" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.communicate(timeout=30)


def test_simultaneous_enrolments_of_one_site_get_distinct_numbers(pg_url):
    a, b = Store.open(pg_url), Store.open(pg_url, migrate=False)
    try:
        t1, t2 = a.create_enrol_token("S9"), a.create_enrol_token("S9")
        got: dict[str, str] = {}
        errors: list[BaseException] = []

        def first():
            try:
                with a.transaction():
                    got["a"] = a.enrol(t1, bytes(SigningKey.generate().verify_key)).device
                    time.sleep(0.5)        # the second enrolment takes the same count meanwhile
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def second():
            try:
                time.sleep(0.1)
                got["b"] = b.enrol(t2, bytes(SigningKey.generate().verify_key)).device
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert sorted(got.values()) == ["D-S9-1", "D-S9-2"]
    finally:
        a.close()
        b.close()
