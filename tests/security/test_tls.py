"""The centre served over TLS with a CA made in the test (trustme), and the edge verifying it.

The edge trusts the CA file it was given at enrolment (``edge enroll URL TOKEN --ca FILE``, kept as
``centre-ca.pem`` in the state directory) and nothing else; a server showing a certificate from any
other CA is refused with a coded, Chinese-explained error, and the journal keeps every entry queued.
"""

from __future__ import annotations

import pytest
import trio
import trustme

from edge.enrol import CA_FILE, EnrolError, enroll, load_device
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.transport import centre_client
from edge.uplink import CentreClient, Uplink, open_uplink
from harness.simulate import pharmacy_sale
from sync.centre.server import start_centre
from sync.centre.store import open_store
from sync.errors import TransportError

SITE = "S330300001"


def write_cert(ca: trustme.CA, where, name: str) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = where / f"{name}.crt", where / f"{name}.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture
def city_ca(tmp_path):
    ca = trustme.CA()
    path = tmp_path / "city-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
async def tls_centre(nursery, tmp_path, city_ca):
    certfile, keyfile = write_cert(city_ca[0], tmp_path, "centre")
    store = open_store(tmp_path / "centre.db")
    try:
        yield await start_centre(nursery, store, certfile=certfile, keyfile=keyfile)
    finally:
        store.close()


@pytest.fixture
async def impostor(nursery, tmp_path):
    """A centre at another address whose certificate comes from another CA (a man in the middle)."""
    certfile, keyfile = write_cert(trustme.CA(), tmp_path, "impostor")
    store = open_store(tmp_path / "impostor.db")
    try:
        yield await start_centre(nursery, store, certfile=certfile, keyfile=keyfile)
    finally:
        store.close()


async def enrolled(centre, state, ca_path, entries: int = 3):
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, SITE)
    cfg = await enroll(centre.url, token, state, ca_file=ca_path)
    journal = JournalStore.open(state / "journal.db", signing_key=load_device_key(state / "device.key"),
                                device=cfg.device)
    for i in range(1, entries + 1):
        journal.append("settlement", pharmacy_sale(i, device=cfg.device), time_ms=1_764_000_000_000 + i, mono_ns=i)
    return cfg, journal


async def test_enrol_and_upload_over_tls_with_the_city_ca(tls_centre, tmp_path, city_ca):
    assert tls_centre.url.startswith("https://")
    state = tmp_path / "edge"
    cfg, journal = await enrolled(tls_centre, state, city_ca[1])
    try:
        assert cfg.centre_url == tls_centre.url and load_device(state).centre_url.startswith("https://")
        assert (state / CA_FILE).read_bytes() == city_ca[1].read_bytes()   # pinned beside device.json
        async with centre_client(state) as http:
            up = await open_uplink(state, journal, client=http)
            report = await up.sync_once()
        assert report.uploaded == 3 and journal.acked_seq == 3 and journal.backlog().count == 0
        assert tls_centre.store.high_water(cfg.device) == 3
    finally:
        journal.close()


async def test_a_certificate_from_another_ca_is_refused_and_every_entry_stays_queued(tls_centre, impostor, tmp_path,
                                                                                     city_ca):
    state = tmp_path / "edge"
    cfg, journal = await enrolled(tls_centre, state, city_ca[1])
    key = load_device_key(state / "device.key")
    # The impostor even knows the device (a copy of the centre's database): only TLS stands in the way.
    impostor.store.register_device(cfg.device, SITE, bytes(key.verify_key))
    try:
        async with centre_client(state) as http:
            client = CentreClient(impostor.url, cfg.device, key, client=http)
            up = Uplink(journal, client, state_dir=state)
            with pytest.raises(TransportError) as exc:
                await up.sync_once()
        err = exc.value
        assert err.code == "centre_cert_untrusted" and impostor.url in err.message
        assert "证书" in err.zh and "未上传的记录仍保存在本机" in err.zh
        assert journal.backlog().count == 3 and journal.acked_seq == 0 and not journal.quarantined()
        assert impostor.store.high_water(cfg.device) == 0     # nothing reached the impostor
    finally:
        journal.close()


async def test_enrolment_with_an_impostor_is_refused_and_writes_no_enrolment(impostor, tmp_path, city_ca):
    state = tmp_path / "edge"
    token = await trio.to_thread.run_sync(impostor.store.create_enrol_token, SITE)
    with pytest.raises(TransportError) as exc:
        await enroll(impostor.url, token, state, ca_file=city_ca[1])
    assert exc.value.code == "centre_cert_untrusted" and "证书" in exc.value.zh
    assert not (state / "device.json").exists()
    assert impostor.store.devices() == []


async def test_plain_http_to_a_tls_centre_fails_clearly(tls_centre, tmp_path):
    plain = tls_centre.url.replace("https://", "http://")
    token = await trio.to_thread.run_sync(tls_centre.store.create_enrol_token, SITE)
    with pytest.raises(TransportError) as exc:
        await enroll(plain, token, tmp_path / "edge")
    err = exc.value
    assert err.code == "centre_needs_https" and "https://" in err.message and "https://" in err.zh
    assert not (tmp_path / "edge" / "device.json").exists()


async def test_a_damaged_ca_file_is_refused_before_anything_is_sent(tls_centre, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    token = await trio.to_thread.run_sync(tls_centre.store.create_enrol_token, SITE)
    with pytest.raises(EnrolError) as exc:
        await enroll(tls_centre.url, token, tmp_path / "edge", ca_file=bad)
    assert exc.value.code == "bad_ca_file" and "证书" in exc.value.zh
    assert not (tmp_path / "edge" / CA_FILE).exists() and tls_centre.store.devices() == []


async def test_diagnose_checks_tls_against_the_pinned_ca(tls_centre, tmp_path, city_ca):
    from edge.diagnose._centre import check_tls
    from edge.diagnose._context import Context

    state = tmp_path / "edge"
    cfg, journal = await enrolled(tls_centre, state, city_ca[1], entries=0)
    journal.close()
    finding = await check_tls(Context(state_dir=state))
    assert finding.status == "ok", finding
    (state / CA_FILE).write_bytes(trustme.CA().cert_pem.bytes())   # a CA file that is not the centre's
    finding = await check_tls(Context(state_dir=state))
    assert finding.status == "fail" and CA_FILE in finding.next_step_zh, finding
