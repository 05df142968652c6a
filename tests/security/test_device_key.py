"""Keys are never silently replaced: no device key is created where a journal or an enrolment exists.

Finding (issue 14): ``edge run`` wrote a new ``device.key`` when the file was missing, even beside an
existing journal, then refused to start (journal_mismatch) and left the wrong key behind.
"""

from __future__ import annotations

import pytest

from edge.enrol import device_key
from edge.journal.errors import KeyMissing


@pytest.mark.parametrize("existing", ["journal.db", "device.json"])
def test_no_key_is_created_beside_a_journal_or_an_enrolment(tmp_path, existing):
    (tmp_path / existing).write_bytes(b"x")
    with pytest.raises(KeyMissing) as exc:
        device_key(tmp_path)   # what the daemon's start (`edge run`) calls
    err = exc.value
    assert err.code == "key_missing_restore" and str(tmp_path / "device.key") in err.message
    assert "设备密钥" in err.zh and "恢复" in err.zh
    assert not (tmp_path / "device.key").exists()


def test_a_fresh_state_directory_gets_a_key_once(tmp_path):
    key = device_key(tmp_path)
    assert (tmp_path / "device.key").exists() and bytes(device_key(tmp_path)) == bytes(key)
