"""Daily per-site reconciliation (对账, like the national interface's 3201/3202).

``daily(db, site, date)`` compares, for one site and one business day (the visit date), what the
site's counters journaled with what the centre accepted, entry by entry:

* ``journaled``: counts and sums of medfee, fund, account and cash as the entries say
  (settlements; claims as paid with fund 0; cancels negative);
* ``accepted``: the same as the centre accepted them after reconciliation (rejected and disputed
  settlements accept nothing; credits and variances move money between the columns);
* ``differences``: every entry whose journaled and accepted figures differ, each with the outcome,
  its codes and the reason that explains it; ``adjustments``: entries accepted as journaled but
  adjusted all the same (offline fund variance, account debt). Entries not reconciled yet are listed as ``pending``
  (their accepted figures are not known: run ``centre reconcile``), and entries refused at ingest
  (bad signature, broken chain...) as ``rejected_at_ingest``.

``explained`` is true when every journaled-vs-accepted difference is accounted for by an entry's
outcome: then sum(journaled) − sum(differences' deltas) = sum(accepted), column by column.
Renderers: :func:`to_csv`, :func:`to_html`, :func:`to_text` (the demo prints this one).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from typing import Any

import cbor2

from edge.settle import yuan
from sync.centre import payouts
from sync.centre.errors import ReportError
from sync.centre.pages import render

COLUMNS = ("medfee", "fund", "acct", "cash")



def _journaled_of(kind: str, body: dict) -> dict:
    """Journaled figures straight from an entry body (for entries not reconciled yet)."""
    try:
        if kind == "settlement":
            a = body["amounts"]
            return {"medfee": a["medfee_sumamt"], "fund": a["hifp_pay"], "acct": a["acct_pay"], "cash": a["psn_cash_pay"]}
        if kind == "claim":
            p = body["paid"]
            return {"medfee": p["medfee_sumamt"], "fund": 0, "acct": p["acct_pay"], "cash": p["psn_cash_pay"]}
        if kind == "cancel":
            a = body["amounts"]
            return {"medfee": -a.get("medfee_sumamt", 0), "fund": -a.get("hifp_pay", 0), "acct": -a.get("acct_pay", 0),
                    "cash": -a.get("psn_cash_pay", 0)}
    except (KeyError, TypeError):
        pass
    return {k: 0 for k in COLUMNS}


def _date_of(kind: str, body: dict) -> str | None:
    visit = body.get("visit") if isinstance(body, dict) else None
    if isinstance(visit, dict) and isinstance(visit.get("date"), str):
        return visit["date"]
    return None


def daily(store, site: str, date: str) -> dict[str, Any]:
    """The day's reconciliation for ``site`` (reads ``store.recon``)."""
    from sync.centre.reconcile import KINDS

    try:
        _dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ReportError(f"date must be YYYY-MM-DD, got {date!r}") from None
    recon = store.recon
    devices = recon.site_devices(site)
    rows = recon.outcomes_of_day(site, date)
    decided = {(r["device"], r["seq"]) for r in rows}
    zero = {k: 0 for k in COLUMNS}
    journaled = {"count": 0, **zero}
    accepted = {"count": 0, **zero}
    by_kind: dict[str, dict] = {}
    outcomes: dict[str, int] = {}
    differences, pending, adjustments = [], [], []
    totals = {"credit": 0, "variance": 0, "debt": 0}

    def add(bucket: dict, figures: dict, counted: bool) -> None:
        bucket["count"] += 1 if counted else 0
        for k in COLUMNS:
            bucket[k] += figures[k]

    for r in rows:
        j = {k: r["j_" + k] for k in COLUMNS}
        a = {k: r["a_" + k] for k in COLUMNS}
        codes = json.loads(r["codes"])
        is_accepted = r["outcome"] in ("confirmed", "adjusted") or codes == ["claim_queued"]
        kb = by_kind.setdefault(r["kind"], {"journaled": {"count": 0, **zero}, "accepted": {"count": 0, **zero}})
        add(journaled, j, True)
        add(kb["journaled"], j, True)
        add(accepted, a, is_accepted)
        add(kb["accepted"], a, is_accepted)
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        for k in totals:
            totals[k] += r[k]
        if j != a:
            differences.append({"device": r["device"], "seq": r["seq"], "kind": r["kind"], "psn_no": r["psn_no"],
                                "outcome": r["outcome"], "codes": codes, "reason": r["reason"],
                                "journaled": j, "accepted": a, "delta": {k: j[k] - a[k] for k in COLUMNS},
                                "credit": r["credit"], "variance": r["variance"], "debt": r["debt"]})
        elif r["outcome"] == "adjusted":
            # Same figures, yet adjusted: a fund variance or an account debt (the site is paid as journaled).
            adjustments.append({"device": r["device"], "seq": r["seq"], "kind": r["kind"], "psn_no": r["psn_no"],
                                "codes": codes, "reason": r["reason"], "variance": r["variance"], "debt": r["debt"]})
    # Entries journaled but not reconciled yet: they count as journaled and are listed as pending.
    if devices:
        for e in recon.entries_of(devices):
            if e["kind"] not in KINDS or (e["device"], e["seq"]) in decided:
                continue
            body = cbor2.loads(e["raw"])["body"]
            if _date_of(e["kind"], body) != date:
                continue
            j = _journaled_of(e["kind"], body)
            add(journaled, j, True)
            kb = by_kind.setdefault(e["kind"], {"journaled": {"count": 0, **zero}, "accepted": {"count": 0, **zero}})
            add(kb["journaled"], j, True)
            pending.append({"device": e["device"], "seq": e["seq"], "kind": e["kind"], "journaled": j,
                            "reason": "not reconciled yet: run `centre reconcile`"})
        rejected = recon.rejections_of(devices)
    else:
        rejected = []
    unexplained = {k: journaled[k] - accepted[k] - sum(d["delta"][k] for d in differences)
                   - sum(p["journaled"][k] for p in pending) for k in COLUMNS}
    claims = recon.claims_of_day(site, date)
    return {
        "site": site, "date": date, "devices": devices,
        "journaled": journaled, "accepted": accepted, "by_kind": by_kind, "outcomes": outcomes,
        "credit": totals["credit"], "variance": totals["variance"], "debt": totals["debt"],
        "claims": {c["status"]: {"count": int(c["n"]), "reimbursed": int(c["amount"])} for c in claims},
        # Money owed to patients in cash (credits, approved claims, centre cancels): owed, paid, outstanding.
        "payouts": payouts.day_rows(store, site, date),
        "differences": differences, "adjustments": adjustments, "pending": pending,
        "rejected_at_ingest": [dict(r) for r in rejected],
        "explained": all(v == 0 for v in unexplained.values()) and all(d["reason"] for d in differences),
    }


# ---------------------------------------------------------------------------------- renderers ---
def to_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True)


CSV_FIELDS = ("row", "device", "seq", "kind", "psn_no", "outcome", "codes", "j_medfee", "j_fund", "j_acct", "j_cash",
              "a_medfee", "a_fund", "a_acct", "a_cash", "reason")


def to_csv(report: dict) -> str:
    """One line per difference or pending entry, then the totals (fen; UTF-8)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for d in report["differences"]:
        w.writerow(["difference", d["device"], d["seq"], d["kind"], d["psn_no"] or "", d["outcome"], " ".join(d["codes"]),
                    *(d["journaled"][k] for k in COLUMNS), *(d["accepted"][k] for k in COLUMNS), d["reason"]])
    for p in report["pending"]:
        w.writerow(["pending", p["device"], p["seq"], p["kind"], "", "", "", *(p["journaled"][k] for k in COLUMNS),
                    "", "", "", "", p["reason"]])
    j, a = report["journaled"], report["accepted"]
    w.writerow(["total", "", j["count"], "", "", "", "", *(j[k] for k in COLUMNS), *(a[k] for k in COLUMNS),
                f"accepted count {a['count']}; explained={report['explained']}"])
    return out.getvalue()


def to_text(report: dict) -> str:
    j, a = report["journaled"], report["accepted"]
    lines = [f"Reconciliation of site {report['site']} for {report['date']} "
             f"({len(report['devices'])} device(s))",
             f"{'':12}{'count':>7}{'medfee':>12}{'fund':>12}{'account':>12}{'cash':>12}",
             f"{'journaled':12}{j['count']:>7}" + "".join(f"{yuan(j[k]):>12}" for k in COLUMNS),
             f"{'accepted':12}{a['count']:>7}" + "".join(f"{yuan(a[k]):>12}" for k in COLUMNS),
             "outcomes: " + (", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())) or "none"),
             f"credits to patients ¥{yuan(report['credit'])}, offline variance ¥{yuan(report['variance'])}, "
             f"account debts ¥{yuan(report['debt'])}"]
    po = report.get("payouts") or {"site": {"owed": 0, "paid": 0, "outstanding": 0}, "patients": []}
    lines.append(f"owed to patients ¥{yuan(po['site']['owed'])}, paid ¥{yuan(po['site']['paid'])}, "
                 f"outstanding ¥{yuan(po['site']['outstanding'])}")
    for p in po["patients"]:
        lines.append(f"  {p['psn_no']}: owed ¥{yuan(p['owed'])}, paid ¥{yuan(p['paid'])}, "
                     f"outstanding ¥{yuan(p['outstanding'])}")
    if report["claims"]:
        lines.append("claims: " + ", ".join(f"{k} {v['count']} (reimbursed ¥{yuan(v['reimbursed'])})"
                                            for k, v in sorted(report["claims"].items())))
    for d in report["differences"]:
        lines.append(f"  {d['device']} #{d['seq']} {d['kind']} {d['outcome']} ({', '.join(d['codes'])}): {d['reason']}")
    for d in report["adjustments"]:
        lines.append(f"  {d['device']} #{d['seq']} {d['kind']} adjusted ({', '.join(d['codes'])}): {d['reason']}")
    for p in report["pending"]:
        lines.append(f"  {p['device']} #{p['seq']} {p['kind']} pending: {p['reason']}")
    for r in report["rejected_at_ingest"]:
        lines.append(f"  {r['device']} #{r['seq']} rejected at ingest ({r['code']}): {r['message']}")
    lines.append("every difference explained" if report["explained"] else "UNEXPLAINED differences: investigate")
    return "\n".join(lines)


def to_html(report: dict) -> str:
    return render("report.html", r=report, columns=COLUMNS)


RENDERERS = {"json": to_json, "csv": to_csv, "html": to_html, "text": to_text}
