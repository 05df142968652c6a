"""`edge` commands of the sync group (filled in by the issue that builds it)."""


def register(sub) -> None:
    return None
