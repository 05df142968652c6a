"""Reviewer routes (issue 8 fills this in); ``routes`` is mounted by sync.centre.app."""

routes: list = []
