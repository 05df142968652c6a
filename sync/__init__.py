"""Store-and-forward sync: the wire protocol, signed bundles and the city centre service."""
