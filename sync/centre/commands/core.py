"""`centre` commands: run, enroll-token, publish (issue 6 fills this in)."""


def register(sub) -> None:
    return None
