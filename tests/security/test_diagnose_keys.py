"""Diagnose compares the device key with the journal's and the enrolment's key ids and says which file
to restore (issue 14, finding 6: with a wrong ``device.key`` beside the journal, diagnose called the
key OK and the device healthy).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.diagnose import Context
from edge.diagnose import run
from edge.enrol import DeviceConfig, load_device, save_device
from edge.journal.keys import create_device_key
from edge.journal.store import JournalStore
from harness.simulate import pharmacy_sale
from sync.keys import key_id

DEVICE = "D-S330300001-1"


def enrolled_state(state: Path, *, record_key_id: bool = True) -> SigningKey:
    """A state directory as an enrolled counter leaves it: key, device.json, a journal with entries."""
    key = create_device_key(state / "device.key")
    save_device(state, DeviceConfig(DEVICE, "S330300001", "http://127.0.0.1:1", "AAAA", "bk", "2026-11-24T09:30:00Z",
                                    device_key_id=key_id(key.verify_key) if record_key_id else None))
    journal = JournalStore.open(state / "journal.db", signing_key=key, device=DEVICE)
    try:
        journal.append("settlement", pharmacy_sale(1, device=DEVICE), time_ms=1_764_000_000_000, mono_ns=1)
    finally:
        journal.close()
    return key


async def key_finding(state: Path):
    report = await run(Context(state_dir=state), only=["key_match"])
    [finding] = report.findings
    return finding


def replace_key(state: Path) -> SigningKey:
    (state / "device.key").unlink()
    return create_device_key(state / "device.key")


async def test_the_right_key_is_ok(tmp_path):
    key = enrolled_state(tmp_path)
    finding = await key_finding(tmp_path)
    assert finding.status == "ok", finding
    assert finding.data["key_id"] == key_id(key.verify_key)


async def test_another_key_beside_the_journal_and_enrolment_names_the_key_file_to_restore(tmp_path):
    key = enrolled_state(tmp_path)
    wrong = replace_key(tmp_path)
    finding = await key_finding(tmp_path)
    expected = key_id(key.verify_key)
    assert finding.status == "fail", finding
    assert finding.data["restore"] == "device.key" and finding.data["expected_key_id"] == expected
    assert finding.data["key_id"] == key_id(wrong.verify_key)
    assert "device.key" in finding.finding_zh and expected in finding.finding_zh
    assert "恢复" in finding.next_step_zh and expected in finding.next_step_zh
    assert "edge journal pubkey" in finding.next_step   # how to tell a backup's key id


async def test_a_missing_key_beside_a_journal_names_the_key_and_its_id(tmp_path):
    key = enrolled_state(tmp_path)
    (tmp_path / "device.key").unlink()
    finding = await key_finding(tmp_path)
    assert finding.status == "fail" and finding.data["restore"] == "device.key"
    assert key_id(key.verify_key) in finding.finding_zh


async def test_an_older_enrolment_without_a_key_id_is_judged_by_the_journal(tmp_path):
    key = enrolled_state(tmp_path, record_key_id=False)
    assert load_device(tmp_path).device_key_id is None
    assert (await key_finding(tmp_path)).status == "ok"
    replace_key(tmp_path)
    finding = await key_finding(tmp_path)
    assert finding.status == "fail" and finding.data["expected_key_id"] == key_id(key.verify_key)


async def test_a_journal_of_another_key_names_the_journal_to_restore(tmp_path):
    key = enrolled_state(tmp_path)
    (tmp_path / "journal.db").unlink()
    other = SigningKey.generate()
    JournalStore.open(tmp_path / "journal.db", signing_key=other, device=DEVICE).close()
    finding = await key_finding(tmp_path)
    assert finding.status == "fail" and finding.data["restore"] == "journal.db"
    assert finding.data["expected_key_id"] == key_id(key.verify_key) and "journal.db" in finding.finding_zh


async def test_an_enrolment_of_another_key_names_device_json_to_restore(tmp_path):
    key = enrolled_state(tmp_path)
    cfg = load_device(tmp_path)
    save_device(tmp_path, DeviceConfig(**{**cfg.__dict__, "device_key_id": "0123456789abcdef"}))
    finding = await key_finding(tmp_path)
    assert finding.status == "fail" and finding.data["restore"] == "device.json"
    assert finding.data["expected_key_id"] == key_id(key.verify_key) and "device.json" in finding.finding_zh


@pytest.mark.parametrize("what", ["nothing", "key only"])
async def test_a_fresh_state_directory_has_nothing_to_compare(tmp_path, what):
    if what == "key only":
        create_device_key(tmp_path / "device.key")
    assert (await key_finding(tmp_path)).status == "ok"
