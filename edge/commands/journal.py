"""`edge` commands of the journal group (filled in by the issue that builds it)."""


def register(sub) -> None:
    return None
