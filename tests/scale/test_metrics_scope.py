"""/metrics says which values are per worker and which database-wide (sums over instances of the
latter overcounted)."""

from __future__ import annotations

from sync.centre.metrics import CentreMetrics
from sync.centre.store import open_store


def test_every_centre_metric_has_a_scope(tmp_path):
    store = open_store(tmp_path / "centre.db")
    try:
        text = CentreMetrics().track_store(store).render().decode()
    finally:
        store.close()
    scopes = {}
    for line in text.splitlines():
        if line.startswith("centre_metric_scope{"):
            labels = dict(kv.split("=") for kv in line[line.index("{") + 1:line.index("}")].split(","))
            scopes[labels["metric"].strip('"')] = labels["scope"].strip('"')
    names = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE centre_")} - {"centre_metric_scope"}
    names = {n.removesuffix("_total") for n in names if not n.endswith("_created")}  # TYPE omits _total
    scoped = {n.removesuffix("_total") for n in scopes}
    assert names <= scoped, names - scoped
    assert scopes["centre_entries_total"] == "database" and scopes["centre_upload_batches_total"] == "worker"
    assert scopes["centre_reconcile_queue_size"] == "database"
    assert "do not sum" in text and "sum over instances" in text
