"""The support bundle: built from a journal full of real-looking personal data, none of it survives."""

from __future__ import annotations

import json
import random
import re
import tarfile

from edge.card.profile import ssn_check_char
from edge.diagnose import Context
from edge.diagnose.bundle import build_bundle
from edge.journal import JournalStore, load_device_key
from harness.simulate import pharmacy_sale

import diag_helpers

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def people(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        given = "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2))))
        name = ("欧阳" if i % 10 == 0 else rnd.choice(SURNAMES)) + given
        while True:  # a valid GB 11643 number; every third person's check character is X
            first17 = (f"3303{rnd.randint(0, 99):02d}{rnd.randint(1950, 2005)}"
                       f"{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(0, 999):03d}")
            if (i % 3 == 0) == (ssn_check_char(first17) == "X"):
                break
        out.append({
            "name": name, "ssn": first17 + ssn_check_char(first17),
            "card_no": ((rnd.choice("ABCDEFGHJK") + f"{rnd.randint(0, 10**8 - 1):08d}") if i % 2
                        else f"{rnd.randint(10**8, 10**9 - 1)}"),
            "card_id": "330300D156000005" + "".join(rnd.choice("0123456789ABCDEF") for _ in range(16)),
            "pin": f"{rnd.randint(0, 999999):06d}", "psn_no": f"P33030{rnd.randint(0, 10**10):010d}",
        })
    return out


def fill_with_people(journal, folks: list[dict]) -> None:
    n = journal.head()[0]
    for p in folks:
        n += 1
        sale = pharmacy_sale(n, device=journal.device)
        sale["psn_no"], sale["card"]["card_id"] = p["psn_no"], p["card_id"]
        journal.append("settlement", sale)
        journal.append("card_event", {"what": f"card read: {p['name']} {p['ssn']} card {p['card_no']}",
                                      "name": p["name"], "ssn": p["ssn"], "card_no": p["card_no"],
                                      "card_id": p["card_id"]})
        journal.append("note", {"what": f"姓名：{p['name']} 来电，密码 {p['pin']} 已重置，卡号{p['card_no']}"})
        journal.append("claim", {
            "req": f"CLAIM-{n}", "cause": "card_unreadable",
            "detail": f"卡片损坏，手工录入：身份证{p['ssn']}，卡号{p['card_no']}",
            "psn_no": None, "certno": p["ssn"], "card": {"card_id": None, "keyed_in": True},
            "visit": {"med_type": "11", "level": "village", "date": "2026-11-24", "acct_used_flag": False},
            "items": [{"code": "XA01AAA001", "cnt": "1", "pric": 2500}],
            "paid": {"medfee_sumamt": 2500, "acct_pay": 0, "psn_cash_pay": 2500},
            "basis": {"catalogue": {"version": 1, "hash": "ab" * 32},
                      "policy": {"version": 1, "hash": "cd" * 32, "policy_version": "2026.3"},
                      "persons": None, "hotlist": {"version": 1}, "limits": None}})


def write_logs(state, folks: list[dict]) -> None:
    logs = state / "logs"
    logs.mkdir()
    lines = []
    for p in folks:
        ident = {"card_id": p["card_id"], "card_no": p["card_no"], "ssn": p["ssn"], "name": p["name"], "sex": "1"}
        pin_bcd = " ".join(p["pin"][i:i + 2] for i in range(0, 6, 2))
        lines += [f"2026-11-24T09:00:00 INFO card inserted: {ident!r}",
                  f"2026-11-24T09:00:01 DEBUG apdu > 00 20 00 00 03 {pin_bcd}",
                  f"2026-11-24T09:00:01 DEBUG apdu > 0020000003{p['pin']}",
                  f"2026-11-24T09:00:02 INFO settled for {p['name']} (psn {p['psn_no']}) pin={p['pin']}"]
    (logs / "agent.log").write_text("\n".join(lines) + "\n", encoding="utf-8")


def extract(path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read().decode("utf-8") for m in tar.getmembers() if m.isfile()}


async def test_no_personal_data_survives_in_the_bundle(healthy, tmp_path):
    folks = people(40)
    key = load_device_key(healthy.dir / "device.key")
    with JournalStore.open(healthy.dir / "journal.db", signing_key=key, device=healthy.device) as journal:
        fill_with_people(journal, folks)
        head = journal.head()[0]
    write_logs(healthy.dir, folks)
    (healthy.dir / "edge.toml").write_text('[centre]\ntoken = "ET-very-secret-token"\n[counter]\nport = 8765\n',
                                           encoding="utf-8")
    journal_before = (healthy.dir / "journal.db").read_bytes()

    out = tmp_path / "bundle.tar.gz"
    ctx = Context(state_dir=healthy.dir, daemon_url=diag_helpers.dead_url())
    summary = await build_bundle(ctx, out)
    files = extract(out)
    everything = "\n".join(files.values())

    assert summary.unacknowledged == head - 5 == 160
    for p in folks:
        for what in ("name", "ssn", "card_no", "card_id", "psn_no"):
            assert p[what] not in everything, (what, p[what])
        assert p["ssn"][:17] not in everything                      # not even without the check digit
        assert re.search(rf"(?<!\d){p['pin']}(?!\d)", everything) is None, p["pin"]
    assert "ET-very-secret-token" not in everything
    assert not any("device.key" in name for name in files)

    # What the help desk needs is still there.
    names = {n.split("/", 1)[1] for n in files}
    assert {"README.txt", "diagnose.json", "versions.json", "journal/stats.json", "journal/unacknowledged.json",
            "config/device.json", "config/edge.json", "logs/agent.log"} <= names
    unacked = json.loads(files["support-bundle/journal/unacknowledged.json"])
    assert "signed originals stay on the device" in unacked["note"]
    assert [e["seq"] for e in unacked["entries"]] == list(range(6, head + 1))
    first = unacked["entries"][0]
    assert first["kind"] == "settlement" and len(first["digest"]) == 12 and first["amounts"]["medfee_sumamt"] > 0
    assert first["psn_no"].endswith(folks[0]["psn_no"][-4:])
    stats = json.loads(files["support-bundle/journal/stats.json"])
    assert stats["kinds"] == {"settlement": 45, "card_event": 40, "note": 40, "claim": 40}
    assert stats["acked_seq"] == 5 and stats["head_seq"] == head
    assert json.loads(files["support-bundle/diagnose.json"])["findings"]
    assert json.loads(files["support-bundle/config/edge.json"])["counter"]["port"] == 8765
    assert json.loads(files["support-bundle/config/device.json"])["device"] == healthy.device
    log = files["support-bundle/logs/agent.log"]
    assert "card inserted" in log and len(log.splitlines()) == 4 * len(folks)   # line structure intact
    assert "apdu > 00 20 00 00 03 ** ** **\n" in log and "apdu > 0020000003******\n" in log
    # Read-only on the journal.
    assert (healthy.dir / "journal.db").read_bytes() == journal_before


async def test_bundle_of_an_empty_state_dir(tmp_path):
    out = tmp_path / "b.tar.gz"
    summary = await build_bundle(Context(state_dir=tmp_path / "nothing", daemon_url=diag_helpers.dead_url()), out)
    files = extract(out)
    assert summary.unacknowledged == 0 and summary.diagnose_status == "broken"
    assert json.loads(files["support-bundle/journal/stats.json"])["present"] is False
    assert not (tmp_path / "nothing").exists()
