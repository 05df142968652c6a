"""Empty lists from the centre CLI are said in words (on stderr: stdout stays JSON lines for scripts)."""

from __future__ import annotations

from sync.centre.cli import main


def test_empty_claims_and_disputes_say_so(tmp_path, capsys):
    db = str(tmp_path / "centre.db")
    assert main(["claims", "--db", db, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no claims" in out.err
    assert main(["dispute", "list", "--db", db, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no disputed settlements" in out.err
