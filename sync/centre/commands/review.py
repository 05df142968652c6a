"""`centre` commands for reconciliation and review (issue 8 fills this in)."""


def register(sub) -> None:
    return None
