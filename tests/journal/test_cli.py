"""`edge journal …` on a real state directory (device.key, device.json, journal.db), in process."""

from __future__ import annotations

import argparse
import json
import sqlite3

import pytest

import journal_bodies as bodies
from journal_bodies import DEVICE
from edge.cli import build_parser, main
from edge.journal import JournalStore, create_device_key, public_key_b64


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "edge"
    key = create_device_key(d / "device.key")
    (d / "device.json").write_text(json.dumps({"device": DEVICE, "site": "S330300001"}))
    with JournalStore.open(d / "journal.db", signing_key=key, device=DEVICE) as j:
        for i in range(1, 7):
            kind, body = ("settlement", bodies.settlement(f"R-{i}")) if i % 2 else ("note", bodies.note(f"n-{i}"))
            j.append(kind, body, time_ms=1_764_000_000_000 + i, mono_ns=i)
        j.mark_acked(2)
    return d


def run(capsys, *argv):
    code = main(["journal", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out)


def _tamper_row(state, seq, sql, *params):
    conn = sqlite3.connect(state / "journal.db")
    with conn:
        conn.execute(sql, (*params, seq))
    conn.close()


def test_status(state, capsys):
    code, data = run_json(capsys, "status", "--state-dir", str(state))
    assert code == 0
    assert (data["device"], data["head_seq"], data["acked_seq"], data["unacknowledged"]) == (DEVICE, 6, 2, 4)
    assert data["backlog"]["count"] == 4
    code, out, _ = run(capsys, "status", "--state-dir", str(state))
    assert "4 unacknowledged" in out


def test_verify_ok_and_state_dir_from_environment(state, capsys, monkeypatch):
    monkeypatch.setenv("EDGE_STATE_DIR", str(state))
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "OK: 6 entries verified" in out


def test_verify_names_the_first_bad_seq(state, capsys):
    conn = sqlite3.connect(state / "journal.db")
    raw = conn.execute("SELECT raw FROM entries WHERE seq = 3").fetchone()[0]
    conn.close()
    at = raw.index(b"R-3") + 2
    _tamper_row(state, 3, "UPDATE entries SET raw = ? WHERE seq = ?", raw[:at] + b"9" + raw[at + 1:])
    code, data = run_json(capsys, "verify", "--state-dir", str(state))
    assert (code, data["ok"], data["first_bad_seq"], data["reason"]) == (1, False, 3, "bad_signature")
    code, out, _ = run(capsys, "verify", "--state-dir", str(state))
    assert "FAILED at seq 3: bad_signature" in out


def test_verify_names_a_deleted_entry(state, capsys):
    _tamper_row(state, 4, "DELETE FROM entries WHERE seq = ?")
    code, data = run_json(capsys, "verify", "--state-dir", str(state))
    assert (code, data["first_bad_seq"], data["reason"]) == (1, 4, "missing")


def test_verify_notices_entries_cut_from_the_end_that_the_centre_acknowledged(state, capsys):
    # Entries 1-2 are acknowledged; remove 2 (the last one is then 1, which still verifies as a chain).
    conn = sqlite3.connect(state / "journal.db")
    with conn:
        conn.execute("DELETE FROM entries WHERE seq >= 2")
        conn.execute("DELETE FROM outbox WHERE seq >= 2")
    conn.close()
    code, data = run_json(capsys, "verify", "--state-dir", str(state))
    assert (code, data["first_bad_seq"], data["reason"]) == (1, 2, "missing")
    assert "acknowledged up to seq 2" in data["detail"]


def test_verify_without_device_json_uses_the_journals_record(state, capsys):
    (state / "device.json").unlink()
    (state / "device.key").unlink()  # a copied journal.db: no key file either
    code, data = run_json(capsys, "verify", "--state-dir", str(state))
    assert code == 0 and data["device"] == DEVICE


def test_export_and_verify_export_with_pinned_key(state, capsys, tmp_path):
    out_file = tmp_path / "audit.ssj"
    code, data = run_json(capsys, "export", str(out_file), "--state-dir", str(state))
    assert code == 0 and data["count"] == 6 and data["verified"]
    code, key = run_json(capsys, "pubkey", "--state-dir", str(state))
    assert code == 0 and key["device"] == DEVICE
    code, out, _ = run(capsys, "verify-export", str(out_file), "--pubkey", key["public_key"])
    assert code == 0 and "OK: 6 entries verified" in out and DEVICE in out
    # Tampered: a byte inside entry 5.
    data = out_file.read_bytes()
    at = data.index(b"R-5") + 2
    out_file.write_bytes(data[:at] + b"8" + data[at + 1:])
    code, report = run_json(capsys, "verify-export", str(out_file), "--pubkey", key["public_key"])
    assert (code, report["first_bad_seq"], report["reason"]) == (1, 5, "bad_signature")


def test_verify_export_refuses_another_key_and_bad_key_text(state, capsys, tmp_path):
    out_file = tmp_path / "audit.ssj"
    assert run(capsys, "export", str(out_file), "--state-dir", str(state))[0] == 0
    other = public_key_b64(create_device_key(tmp_path / "other.key"))
    code, report = run_json(capsys, "verify-export", str(out_file), "--pubkey", other)
    assert (code, report["reason"]) == (1, "key_mismatch")
    code, _, err = run(capsys, "verify-export", str(out_file), "--pubkey", "nonsense")
    assert code == 2 and "base64" in err


def test_receipt_check(state, capsys, tmp_path):
    code, entry = run_json(capsys, "show", "3", "--state-dir", str(state))
    assert code == 0 and entry["seq"] == 3 and entry["kind"] == "settlement"
    code, out, _ = run(capsys, "receipt", entry["qr"], "--state-dir", str(state))
    assert code == 0 and "receipt matches entry 3" in out
    code, out, _ = run(capsys, "receipt", f"3:{entry['digest'].lower()}", "--state-dir", str(state))
    assert code == 0
    wrong = entry["qr"][:-1] + ("A" if entry["qr"][-1] != "A" else "B")
    code, data = run_json(capsys, "receipt", wrong, "--state-dir", str(state))
    assert code == 1 and not data["ok"] and "digest" in data["detail"]
    out_file = tmp_path / "audit.ssj"
    run(capsys, "export", str(out_file), "--state-dir", str(state))
    code, out, _ = run(capsys, "receipt", entry["qr"], "--export", str(out_file))
    assert code == 0 and "matches" in out
    code, data = run_json(capsys, "receipt", "SSJ1:D-S330300001-9:3:" + entry["digest"], "--state-dir", str(state))
    assert code == 1 and "D-S330300001-9" in data["detail"]


def test_reset_is_refused_while_unsent_and_forced_reset_exports_first(state, capsys, tmp_path):
    code, data = run_json(capsys, "reset", "--state-dir", str(state))
    assert code == 1 and data["error"]["code"] == "unsent_entries"
    code, _, err = run(capsys, "reset", "--force", "--state-dir", str(state))
    assert code == 2 and "--export" in err
    assert run_json(capsys, "status", "--state-dir", str(state))[1]["head_seq"] == 6  # nothing lost
    out_file = tmp_path / "before-reset.ssj"
    code, data = run_json(capsys, "reset", "--force", "--export", str(out_file), "--state-dir", str(state))
    assert code == 0 and data["removed"] == 6 and data["unsent"] == 4
    code, out, _ = run(capsys, "verify-export", str(out_file))
    assert code == 0 and "OK: 6 entries" in out
    # The same device cannot continue on the emptied journal (it would fork its chain at the centre).
    code, _, err = run(capsys, "status", "--state-dir", str(state))
    assert code == 2 and "re-enrol" in err.lower()


def test_missing_journal_says_what_to_do(tmp_path, capsys):
    code, _, err = run(capsys, "verify", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "--state-dir" in err


def test_every_journal_command_has_help_text():
    parser = build_parser()
    journal = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "journal")[1]
    actions = [a for a in journal._actions if isinstance(a, argparse._SubParsersAction)][0]
    helps = {c.dest: c.help for c in actions._choices_actions}
    assert set(helps) == {"status", "verify", "export", "verify-export", "receipt", "show", "pubkey", "reset"}
    assert all(h and len(h) > 10 for h in helps.values())
    for name, sub in actions.choices.items():
        for action in sub._actions:
            assert action.help, f"edge journal {name} {action.dest} has no help"
