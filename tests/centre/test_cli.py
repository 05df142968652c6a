"""The `centre` commands of reconciliation and review, run in-process on a real store."""

from __future__ import annotations

import io
import json

import pytest

from sync.centre import cli
from sync.centre.store import Store
from recon_support import CAT_RAW, DAY, HOT_RAW, POL_RAW, T0, Device, claim_body, person, settlement_body, visit

OURS = ("reconcile", "report", "reviewer", "ledger", "claims", "dispute")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_command_has_help_text():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name in OURS:
        assert helps.get(name), name
    for group, dest in (("reviewer", "reviewer_command"), ("ledger", "ledger_command"), ("dispute", "dispute_command")):
        inner = next(a for a in sub.choices[group]._actions if a.dest == dest)
        assert inner._choices_actions and all(c.help for c in inner._choices_actions)
        for leaf in inner.choices.values():
            assert all(a.help for a in leaf._actions if a.dest != "help"), leaf.prog


@pytest.mark.slow
def test_operations_move_the_world_forward(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "centre.db")
    persons = tmp_path / "persons.json"
    persons.write_text(json.dumps({"persons": [person("P0001"), person("P0003", balc=1000)]}))
    assert run(capsys, "ledger", "load", str(persons), "--db", db)[1].strip() == '{"added": 2, "updated": 0}'
    store = Store.open(db)
    try:
        for raw in (CAT_RAW, POL_RAW, HOT_RAW):
            store.put_bundle(raw, now=T0 - DAY)
        d = Device("D-S1-1")
        store.register_device(d.device, "S1", bytes(d.key.verify_key), now=T0 - DAY)
        d.append("settlement", settlement_body(person("P0001"), visit(0)), time=T0)
        d.append("claim", claim_body(person("P0001", status="suspended"), visit(0), "arrears", req="c"), time=T0 + 1)
        store.put_entries(d.device, d.items(), now=T0)
    finally:
        store.close()
    assert run(capsys, "ledger", "suspend", "P0001", "--from", "2026-11-01", "--db", db)[0] == 0
    code, out, _ = run(capsys, "reconcile", "--db", db)
    counts = json.loads(out)
    # The settlement was made on an active snapshot but the person is suspended: fund variance.
    assert code == 0 and counts["adjusted"] == 1 and counts["review"] == 1 and counts["auto_approved"] == 0
    code, out, _ = run(capsys, "ledger", "clear-arrears", "P0001", "--db", db, "--who", "hr-desk")
    assert code == 0 and json.loads(out)["auto_approved"] == 1
    code, out, _ = run(capsys, "claims", "--status", "approved", "--db", db)
    assert json.loads(out)["decided_by"] == "auto"
    code, _, err = run(capsys, "ledger", "clear-arrears", "P0001", "--db", db)
    assert code == 1 and "no open arrears" in err and "[bad_operation]" in err
    code, out, _ = run(capsys, "ledger", "contribute", "P0003", "30000", "--db", db)
    assert json.loads(out)["balc"] == 31000
    code, _, err = run(capsys, "ledger", "contribute", "NOBODY", "1", "--db", db)
    assert code == 1 and "[unknown_person]" in err
    code, out, _ = run(capsys, "ledger", "show", "P0001", "--db", db)
    assert json.loads(out)["arrears"][0]["cleared_ms"] is not None
    code, out, _ = run(capsys, "report", "--site", "S1", "--date", "2026-11-19", "--format", "text", "--db", db)
    assert code == 0 and "every difference explained" in out and "fund_variance" in out
    code, out, _ = run(capsys, "report", "--site", "S1", "--date", "2026-11-19", "--db", db)
    assert json.loads(out)["journaled"]["count"] == 2
    code, _, err = run(capsys, "report", "--site", "S1", "--date", "yesterday", "--db", db)
    assert code == 1 and "YYYY-MM-DD" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    code, out, _ = run(capsys, "reviewer", "add", "zhao", "--role", "auditor", "--password-stdin", "--db", db)
    assert json.loads(out) == {"name": "zhao", "role": "auditor"}
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, "reviewer", "add", "qian", "--password-stdin", "--db", db)
    assert code == 1 and "at least 8" in err
    check = Store.open(db)
    try:
        acts = [a["action"] for a in check.ledger.actions()]
    finally:
        check.close()
    assert acts == ["suspend", "clear_arrears", "approve_claim", "contribute", "add_reviewer"]


def test_every_command_is_in_the_docs():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reconciliation.md").read_text(encoding="utf-8")
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in OURS:
        assert f"`centre {name}" in doc, name
    for group, dest in (("reviewer", "reviewer_command"), ("ledger", "ledger_command"), ("dispute", "dispute_command")):
        inner = next(a for a in sub.choices[group]._actions if a.dest == dest)
        for action in inner.choices:
            assert f"`centre {group} {action}" in doc, f"{group} {action}"


def test_ledger_load_takes_the_published_source_directory(tmp_path, capsys):
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "sync" / "centre" / "sample"
    db = str(tmp_path / "centre.db")
    code, out, _ = run(capsys, "ledger", "load", str(sample), "--db", db)
    persons = json.loads((sample / "persons.json").read_text(encoding="utf-8"))["persons"]
    assert code == 0 and json.loads(out) == {"added": len(persons), "updated": 0}
    code, out, _ = run(capsys, "ledger", "load", str(sample), "--db", db)      # again: balances kept
    assert json.loads(out) == {"added": 0, "updated": len(persons)}
    suspended = next(p for p in persons if p["status"] == "suspended")
    code, out, _ = run(capsys, "ledger", "show", suspended["psn_no"], "--db", db)
    assert json.loads(out)["status"] == "suspended"
    code, _, err = run(capsys, "ledger", "load", str(tmp_path / "missing.json"), "--db", db)
    assert code == 1 and "cannot read" in err
