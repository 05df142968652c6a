"""centre publish: sources (JSON and CSV) checked with the engine's parsers, versions, deltas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.settle import parse_catalogue, parse_person, parse_policy
from sync import bundles
from sync.centre import gen
from sync.centre.publish import SourceError, load_source, publish
from sync.centre.store import open_store

SAMPLE = Path(__file__).resolve().parents[2] / "sync" / "centre" / "sample"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "c.db")
    yield s
    s.close()


def test_sample_is_what_the_generator_writes_and_the_engine_reads(tmp_path):
    gen.write_sample(tmp_path)
    for name in ("catalogue.json", "policy.json", "persons.json", "hotlist.csv"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    policy = parse_policy(load_source(SAMPLE, "policy"))
    assert len(policy.rules) == 48 and policy.offline.offline_acct_allowance == 50000
    cat = parse_catalogue(load_source(SAMPLE, "catalogue")["items"])
    assert {"A", "B", "C"} <= {c.cls for c in cat.values()} and any("胶囊" in c.name for c in cat.values())
    items = {it["code"]: it for it in load_source(SAMPLE, "catalogue")["items"]}
    assert items["XJ01CAA040E001010101445"]["py"].startswith("amxljn")  # 阿莫西林胶囊: initials shipped
    persons = load_source(SAMPLE, "persons")["persons"]
    states = [parse_person(p) for p in persons]
    assert len(persons) == 20 and all(len(p["certno"]) == 18 for p in persons)
    assert {s.status for s in states} == {"active", "suspended"} and any(s.pending_review for s in states)
    assert any(s.insutype == "390" for s in states) and any(s.psn_type == "retired" for s in states)
    assert any(f.code == "M03900" for s in states for f in s.chronic)
    hot = {c["card_id"] for c in load_source(SAMPLE, "hotlist")["cards"]}
    assert len(hot) == 3 and hot & {cid for p in persons for cid in p["card_ids"]}


def test_json_ratios_are_exact_text(store, tmp_path):
    (tmp_path / "catalogue.json").write_text('{"items": [{"code": "X", "class": "B", "selfpay_prop": 0.1}]}')
    assert load_source(tmp_path, "catalogue")["items"][0]["selfpay_prop"] == "0.1"  # never a binary float


def test_csv_sources_and_delta_versions(store, tmp_path):
    key = SigningKey.generate()
    (tmp_path / "catalogue.csv").write_text(
        "code,name,class,selfpay_prop,pric_uplmt_amt,begndate,enddate\n"
        "A1,阿莫西林胶囊,A,,1200,2026-01-01,\nB1,硝苯地平缓释片,B,0.10,,2026-01-01,\n", encoding="utf-8")
    (tmp_path / "persons.csv").write_text(
        "psn_no,certno,insutype,psn_type,status,chronic,card_ids,balc,deductible_used,fund_paid,pending_review\n"
        "P1,330302199001011235,310,working,active,M03900,C1;C2,50000,0,0,0\n", encoding="utf-8")
    rows = publish(store, key, tmp_path)
    assert [(r["kind"], r["version"]) for r in rows] == [("catalogue", 1), ("persons", 1)]
    raw = store.latest_bundle("persons")["raw"]
    p = bundles.open_bundle(raw, key.verify_key).payload["persons"][0]
    assert p["card_ids"] == ["C1", "C2"] and p["chronic"] == ["M03900"] and p["balc"] == 50000
    (tmp_path / "catalogue.csv").write_text(
        "code,name,class,selfpay_prop,pric_uplmt_amt,begndate,enddate\n"
        "A1,阿莫西林胶囊,A,,1300,2026-01-01,\nC1,保健品,C,,,2026-01-01,\n", encoding="utf-8")
    rows = publish(store, key, tmp_path)
    assert [(r["kind"], r["version"], r["base"]) for r in rows] == [("catalogue", 2, 1), ("catalogue", 2, None)]
    d = bundles.open_bundle(store.bundle("catalogue", 2, base=1), key.verify_key, current_version=1).payload
    assert [i["code"] for i in d["upsert"]] == ["A1", "C1"] and d["delete"] == ["B1"]
    assert publish(store, key, tmp_path) == []


@pytest.mark.parametrize("name,text,needle", [
    ("policy.json", '{"version": "x", "rules": [{"insutype": "310"}], "offline": null}', "policy"),
    ("policy.json", json.dumps({"version": "1", "rules": []}), "offline"),
    ("catalogue.json", '{"items": [{"code": "X", "class": "A", "pric_uplmt_amt": 12.5}]}', "pric_uplmt_amt"),
    ("catalogue.json", '{"items": [{"code": "X", "class": "Z"}]}', "class"),
    ("persons.csv", "psn_no,insutype,psn_type,balc\nP1,310,working,12.5\n", "whole number"),
    ("hotlist.json", '[{"reason": "lost"}]', "card_id"),
    ("catalogue.json", "{not json", "not valid JSON"),
])
def test_bad_sources_are_refused_before_signing(store, tmp_path, name, text, needle):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SourceError, match=needle) as exc:
        publish(store, SigningKey.generate(), tmp_path)
    assert exc.value.code == "bad_source"
    assert store.bundle_versions() == {}
