"""Attacks on the edge's TLS pinning from outside: certificates the pinned CA issued but that must not
pass, CA files an operator (or an intruder) replaced, and an enrolment that would pin a CA and then
talk in clear. Each refusal is coded, and nothing reaches the centre or is written as an enrolment.
"""

from __future__ import annotations

import datetime as _dt
import os

import pytest
import trio
import trustme

from edge.enrol import CA_FILE, EnrolError, enroll
from edge.transport import tls_context
from sync.centre.server import start_centre
from sync.centre.store import open_store
from sync.errors import TransportError

SITE = "S330300001"


@pytest.fixture
def city_ca(tmp_path):
    ca = trustme.CA()
    path = tmp_path / "city-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


async def _centre(nursery, tmp_path, cert: trustme.LeafCert, name: str):
    certfile, keyfile = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    store = open_store(tmp_path / f"{name}.db")
    return await start_centre(nursery, store, certfile=str(certfile), keyfile=str(keyfile)), store


async def _refused_enrolment(centre, state, ca_path) -> TransportError:
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, SITE)
    with pytest.raises(TransportError) as exc:
        await enroll(centre.url, token, state, ca_file=ca_path)
    assert not (state / "device.json").exists() and centre.store.devices() == []
    return exc.value


async def test_an_expired_certificate_from_the_pinned_ca_is_refused(nursery, tmp_path, city_ca):
    past = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=30)
    cert = city_ca[0].issue_cert("127.0.0.1", not_before=past - _dt.timedelta(days=365), not_after=past)
    centre, store = await _centre(nursery, tmp_path, cert, "expired")
    try:
        err = await _refused_enrolment(centre, tmp_path / "edge", city_ca[1])
        assert err.code == "centre_cert_untrusted" and "expired" in err.message
    finally:
        store.close()


async def test_a_certificate_of_the_pinned_ca_for_another_name_is_refused(nursery, tmp_path, city_ca):
    cert = city_ca[0].issue_cert("other-city.example")
    centre, store = await _centre(nursery, tmp_path, cert, "wrongname")
    try:
        err = await _refused_enrolment(centre, tmp_path / "edge", city_ca[1])
        assert err.code == "centre_cert_untrusted"
    finally:
        store.close()


def test_an_empty_ca_file_is_refused(tmp_path):
    (tmp_path / CA_FILE).write_bytes(b"")
    with pytest.raises(TransportError) as exc:
        tls_context(tmp_path)
    assert exc.value.code == "bad_ca_file"


def test_a_pinned_ca_replaced_by_a_dangling_symlink_is_refused_not_the_system_cas(tmp_path):
    # The pin must fail closed: a link to a missing file is a damaged CA file, not "no CA pinned"
    # (which would trust every public CA for the centre's name).
    os.symlink(tmp_path / "gone.pem", tmp_path / CA_FILE)
    with pytest.raises(TransportError) as exc:
        tls_context(tmp_path)
    assert exc.value.code == "bad_ca_file"


async def test_enrolment_pinning_a_ca_over_plain_http_is_refused_before_sending_the_token(nursery, tmp_path, city_ca):
    store = open_store(tmp_path / "plain.db")
    try:
        centre = await start_centre(nursery, store)      # plain http
        assert centre.url.startswith("http://")
        token = await trio.to_thread.run_sync(store.create_enrol_token, SITE)
        with pytest.raises(EnrolError) as exc:
            await enroll(centre.url, token, tmp_path / "edge", ca_file=city_ca[1])
        assert exc.value.code == "ca_needs_https" and "https://" in exc.value.zh
        assert store.devices() == [] and not (tmp_path / "edge" / "device.json").exists()
    finally:
        store.close()


@pytest.mark.parametrize("case", ["garbage", "missing", "key_of_another_cert"])
def test_centre_run_with_an_unusable_certificate_or_key_says_which_file_without_a_traceback(tmp_path, city_ca, case):
    import subprocess
    import sys

    cert = city_ca[0].issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "centre.crt", tmp_path / "centre.key"
    certfile.write_bytes(cert.cert_chain_pems[0].bytes())
    if case == "garbage":
        keyfile.write_text("not a key\n")
    elif case == "key_of_another_cert":
        city_ca[0].issue_cert("127.0.0.1").private_key_pem.write_to_path(str(keyfile))
    run = subprocess.run([sys.executable, "-m", "sync.centre", "run", "--data-dir", str(tmp_path / "centre"),
                          "--port", "0", "--no-background", "--certfile", str(certfile), "--keyfile", str(keyfile)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and "[bad_tls_file]" in run.stderr, run.stderr[-600:]
    assert str(keyfile) in run.stderr or str(certfile) in run.stderr


def test_an_enrolment_edited_to_plain_http_beside_a_pinned_ca_is_refused(tmp_path, city_ca):
    # device.json is a file an operator (or an intruder) can edit: with the CA pinned, an http:// centre
    # address would send every settlement in clear and unverified.
    from edge.enrol import DeviceConfig, load_device, save_device

    state = tmp_path / "edge"
    save_device(state, DeviceConfig("D-S330300001-1", SITE, "https://127.0.0.1:8700", "AAAA", "bk",
                                    "2026-11-24T09:30:00Z"))
    (state / CA_FILE).write_bytes(city_ca[1].read_bytes())
    assert load_device(state).centre_url.startswith("https://")
    save_device(state, DeviceConfig("D-S330300001-1", SITE, "http://127.0.0.1:8700", "AAAA", "bk",
                                    "2026-11-24T09:30:00Z"))
    with pytest.raises(EnrolError) as exc:
        load_device(state)
    assert exc.value.code == "ca_needs_https" and CA_FILE in exc.value.message
