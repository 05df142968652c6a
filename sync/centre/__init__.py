"""The city centre: ingest, store, publish, reconcile, review."""
