"""Online settlement route for counters (issue 7 fills this in); ``routes`` is mounted by sync.centre.app."""

routes: list = []
