"""The centre's HTML pages, rendered from Jinja2 templates (``sync/centre/templates/*.html``).

Autoescape is on for every template, so a value from the database (a note, a reason, a name) can never
become markup; templates never call an escape function by hand. Filters: ``yuan`` (fen -> "12.34"),
``money`` (signed, with ¥) and ``urlquote`` (a path segment).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from edge.settle import yuan


def money(fen: int) -> str:
    return ("-" if fen < 0 else "") + "¥" + yuan(abs(fen))


_ENV = Environment(loader=PackageLoader("sync.centre", "templates"),
                   autoescape=select_autoescape(["html"], default=True, default_for_string=True),
                   keep_trailing_newline=False)
_ENV.filters.update(yuan=yuan, money=money, urlquote=lambda s: quote(str(s)))


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
