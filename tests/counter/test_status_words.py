"""`edge status` says an empty backlog and unknown values in words (never "oldest None s")."""

from __future__ import annotations

from edge.commands.daemon import status_text

BASE = {"device": "D-S1-1", "online": True, "last_error": None, "journal": {"ok": True, "error": None},
        "cache": {"age_s": None, "bundles": {}}}


def test_an_empty_backlog_and_an_unrefreshed_cache_are_said_in_words():
    text = status_text({**BASE, "backlog": {"count": 0, "bytes": 0, "oldest_age_s": None}})
    assert "None" not in text
    assert "backlog: empty" in text and "refreshed never" in text and "no bundles yet" in text


def test_a_waiting_backlog_names_its_oldest_age():
    text = status_text({**BASE, "backlog": {"count": 2, "bytes": 900, "oldest_age_s": 41}})
    assert "2 entries, 900 bytes, oldest 41 s" in text
    assert "unknown (the journal" in status_text({**BASE, "backlog": None})
