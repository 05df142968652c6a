"""``centre publish``: build signed, versioned bundles from source files and offer them to devices.

Source directory (any subset; a kind whose file is missing is skipped):

    catalogue.json | catalogue.csv   items (``{"items": [...]}`` or a list); CSV columns code, name, class,
                                     selfpay_prop, pric_uplmt_amt, begndate, enddate, py
    policy.json                      {"version", "rules": [...], "offline": {...}}
    persons.json | persons.csv       person snapshots; CSV lists (chronic, card_ids) are ';'-separated
    hotlist.json | hotlist.csv       cards: card_id, reason

Each source is checked with the engine's own parsers before anything is signed (a bundle the edge
could not read is refused here, at the centre). Versions count up per kind from what the store
holds. When the content equals the newest bundle, nothing is published ("unchanged").

Feed policy (why): the first bundle of a kind is offered in full; after that only the delta from the
previous version is offered, and the full bundle is stored and fetchable (``GET /v1/bundle/{kind}``).
A device therefore downloads 100k catalogue items once, then only changes; a device whose chain
broke fetches the full bundle. Policy has no deltas (it is small): every version is offered in full.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

import cbor2

from edge.settle import SettlementError, parse_catalogue, parse_person, parse_policy
from sync import bundles
from sync.centre.store import now_ms
from sync.centre.errors import SourceError

KINDS = bundles.KINDS
_COLL = {"catalogue": "items", "persons": "persons", "hotlist": "cards"}



def _plain(v: Any) -> Any:
    if isinstance(v, float):
        raise SourceError("a number with a decimal point in a source file: write ratios as text (\"0.10\") "
                          "and money as whole fen")
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _read_json(path: Path) -> Any:
    try:
        return _plain(json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()} for row in csv.DictReader(f)]


def _int(v: str, where: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise SourceError(f"{where}: {v!r} is not a whole number (money is in fen)") from None


def _catalogue_csv(rows: list[dict], path: Path) -> list[dict]:
    out = []
    for i, r in enumerate(rows, start=2):
        it = {"code": r["code"], "name": r.get("name") or r["code"], "class": r["class"],
              "begndate": r.get("begndate") or None, "enddate": r.get("enddate") or None}
        if r.get("selfpay_prop"):
            it["selfpay_prop"] = r["selfpay_prop"]
        if r.get("pric_uplmt_amt"):
            it["pric_uplmt_amt"] = _int(r["pric_uplmt_amt"], f"{path}:{i} pric_uplmt_amt")
        if r.get("py"):
            it["py"] = r["py"]
        out.append(it)
    return out


def _persons_csv(rows: list[dict], path: Path) -> list[dict]:
    out = []
    for i, r in enumerate(rows, start=2):
        p = {"psn_no": r["psn_no"], "certno": r.get("certno") or None, "insutype": r["insutype"],
             "psn_type": r["psn_type"], "status": r.get("status") or "active",
             "chronic": [c for c in (r.get("chronic") or "").split(";") if c],
             "card_ids": [c for c in (r.get("card_ids") or "").split(";") if c],
             "balc": _int(r.get("balc") or "0", f"{path}:{i} balc"),
             "deductible_used": _int(r.get("deductible_used") or "0", f"{path}:{i} deductible_used"),
             "fund_paid": _int(r.get("fund_paid") or "0", f"{path}:{i} fund_paid"),
             "pending_review": (r.get("pending_review") or "0").lower() in ("1", "true", "yes")}
        if r.get("name"):
            p["name"] = r["name"]
        out.append(p)
    return out


def load_source(source: Path, kind: str) -> dict | None:
    """The full payload of ``kind`` from the source directory, checked; None when there is no file."""
    j, c = source / f"{kind}.json", source / f"{kind}.csv"
    if kind == "policy":
        if not j.exists():
            return None
        data = _read_json(j)
    elif j.exists():
        data = _read_json(j)
        if isinstance(data, list):
            data = {_COLL[kind]: data}
    elif c.exists():
        rows = _csv_rows(c)
        if kind == "catalogue":
            data = {"items": _catalogue_csv(rows, c)}
        elif kind == "persons":
            data = {"persons": _persons_csv(rows, c)}
        else:
            data = {"cards": [{"card_id": r["card_id"], "reason": r.get("reason") or "blocked"} for r in rows]}
    else:
        return None
    _check(kind, data, j if j.exists() else c)
    if kind in _COLL:
        key = bundles.KEYS[kind]
        data = {_COLL[kind]: sorted(data[_COLL[kind]], key=lambda r: r[key])}
    if kind == "catalogue":
        data = {"items": with_initials(data["items"])}
    return data


def with_initials(items: list[dict]) -> list[dict]:
    """Add pinyin initials (``py``) to items that lack them, with the edge's own function.

    Computed once here instead of on every edge: pypinyin needs ~0.5 ms a name, minutes for a 100k
    catalogue on an old counter PC (the edge cache uses ``py`` when the bundle carries it)."""
    from sync.pinyin import initials

    memo: dict[str, str] = {}
    out = []
    for it in items:
        if not it.get("py"):
            name = it.get("name") or it["code"]
            py = memo.get(name)
            if py is None:
                py = memo[name] = initials(name)
            it = {**it, "py": py}
        out.append(it)
    return out


def _check(kind: str, data: Any, path: Path) -> None:
    try:
        if kind == "policy":
            policy = parse_policy(data)
            if policy.offline is None:
                raise SourceError(f"{path}: policy has no 'offline' limits: edges could not settle offline")
        elif kind == "catalogue":
            parse_catalogue(data["items"])
        elif kind == "persons":
            seen = set()
            for p in data["persons"]:
                parse_person(p)
                if p["psn_no"] in seen:
                    raise SourceError(f"{path}: psn_no {p['psn_no']} appears twice")
                seen.add(p["psn_no"])
        else:
            for r in data["cards"]:
                if not isinstance(r.get("card_id"), str) or not r["card_id"]:
                    raise SourceError(f"{path}: every hotlist row needs a card_id")
    except SettlementError as exc:
        raise SourceError(f"{path}: {exc.message}; fix the source file and publish again") from exc
    except (KeyError, TypeError) as exc:
        raise SourceError(f"{path}: missing or malformed field {exc}; fix the source file and publish again") from exc


def delta(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict:
    key, coll = bundles.KEYS[kind], _COLL[kind]
    before = {r[key]: r for r in old.get(coll, [])}
    after = {r[key]: r for r in new.get(coll, [])}
    return {"upsert": [after[k] for k in sorted(after) if before.get(k) != after[k]],
            "delete": sorted(k for k in before if k not in after)}


def publish_payload(store, key, kind: str, payload: dict, *, now: int | None = None) -> list[dict]:
    """Publish ``payload`` as the next version of ``kind``; returns what was stored (may be empty)."""
    now = now_ms() if now is None else now
    latest = store.latest_bundle(kind)
    if latest is None:
        raw = bundles.build(key, kind=kind, version=1, payload=payload, created=now)
        return [dict(store.put_bundle(raw, now=now), offered=True)]
    prev = bundles.open_bundle(latest["raw"], key.verify_key)
    if cbor2.dumps(prev.payload, canonical=True) == cbor2.dumps(payload, canonical=True):
        return []
    version = max(store.bundle_versions().get(kind, 0), prev.version) + 1
    out = []
    if kind in bundles.KEYS:
        d = bundles.build(key, kind=kind, version=version, base=prev.version, payload=delta(kind, prev.payload, payload),
                          created=now)
        out.append(dict(store.put_bundle(d, now=now), offered=True))
    full = bundles.build(key, kind=kind, version=version, payload=payload, created=now)
    offered = kind not in bundles.KEYS
    out.append(dict(store.put_bundle(full, now=now, offer=offered), offered=offered))
    return out


def publish(store, key, source: str | Path, *, kinds=KINDS, now: int | None = None) -> list[dict]:
    """Publish every kind found in ``source``; returns one row per stored bundle."""
    source = Path(source)
    if not source.is_dir():
        raise SourceError(f"{source} is not a directory of source files (catalogue, policy, persons, hotlist)")
    out = []
    payloads = {k: load_source(source, k) for k in kinds}  # check everything before publishing anything
    if all(p is None for p in payloads.values()):
        raise SourceError(f"{source} holds none of catalogue/policy/persons/hotlist (.json or .csv)")
    for kind in kinds:
        payload = payloads[kind]
        if payload is not None:
            out.extend(publish_payload(store, key, kind, payload, now=now))
    return out


def persons_from_ledger(store, verify_key) -> dict:
    """The persons payload from the centre's ledger: each person as last published (name, 异地就医 filings and
    anything else the ledger does not hold) with the ledger's figures on top (status, balance, years and
    accumulators, open reviews, ``reflects_seq``). Persons the ledger holds that were never published are
    added; persons published but not in the ledger stay as published."""
    latest = store.latest_bundle("persons")
    published: dict[str, dict] = {}
    if latest is not None:
        for p in bundles.open_bundle(latest["raw"], verify_key).payload.get("persons", []):
            if isinstance(p, dict) and isinstance(p.get("psn_no"), str):
                published[p["psn_no"]] = p
    merged = {**published}
    for snap in store.ledger.snapshots():
        merged[snap["psn_no"]] = {**published.get(snap["psn_no"], {}), **snap}
    return {"persons": [merged[k] for k in sorted(merged)]}


def publish_persons_from_ledger(store, key, *, now: int | None = None) -> list[dict]:
    """Publish the persons bundle from the centre's ledger (:func:`persons_from_ledger`): each snapshot
    carries its years and accumulators and ``reflects_seq`` (per device, up to which seq its entries are
    in the figures), so a counter re-applies only its own later entries. A persons file carries no
    ``reflects_seq``: the counter then keeps all of its own entries on top (conservative).
    ``centre publish --from-ledger`` runs it; so does ``centre run`` in the background
    (:func:`persons_background`)."""
    return publish_payload(store, key, "persons", persons_from_ledger(store, key.verify_key), now=now)


# How often ``centre run`` publishes persons from the ledger (a pass that finds nothing changed publishes
# nothing). Minutes, not seconds: each pass reads every person, and a counter applies each version.
PERSONS_EVERY_S = 600.0


async def persons_background(store, key, *, interval: float = PERSONS_EVERY_S,
                             task_status=None) -> None:
    """Publish persons from the ledger every ``interval`` seconds, once reconciliation has caught up (an
    empty queue: a snapshot then reflects whole passes), on a connection of its own. The first pass is
    one interval after start. A pass that fails (another worker published the same version first, a busy
    database) is logged and retried next time."""
    import logging

    import trio

    log = logging.getLogger("sync.centre")
    own = await trio.to_thread.run_sync(store.sibling)
    if task_status is not None:
        task_status.started()
    try:
        while True:
            await trio.sleep(interval)
            try:
                if await trio.to_thread.run_sync(own.recon.queue_length):
                    continue          # reconciliation is behind: publish after it caught up
                rows = await trio.to_thread.run_sync(lambda: publish_persons_from_ledger(own, key))
                if rows:
                    log.info("publish: persons from the ledger, version %s", rows[-1].get("version"))
            except Exception as exc:  # the next pass retries; publishing must never stop the centre
                log.warning("publish: persons from the ledger failed (%s: %s); retrying in %.0f s",
                            type(exc).__name__, exc, interval)
    finally:
        if own is not store:
            own.close()
