"""The printable receipt page (server-rendered HTML, inline CSS, inline SVG QR: prints without script
or network). Amounts are fen rendered as yuan text; nothing here does arithmetic on money.

The page is the Jinja2 template ``templates/receipt.html`` with autoescape on: every value from the
view is escaped by the template engine; only the QR code (SVG we generate ourselves) is marked safe.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, Template, select_autoescape
from markupsafe import Markup

from edge.settle import yuan

from .receipts import qr_svg

CHINA = dt.timezone(dt.timedelta(hours=8))


@lru_cache(maxsize=1)
def _template() -> Template:
    env = Environment(loader=PackageLoader("edge.counter", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    return env.get_template("receipt.html")


def render(view: dict[str, Any]) -> str:
    s = view.get("setlinfo", {})
    money = [("费用总额", s.get("medfee_sumamt")), ("统筹基金支付", s.get("fund_pay_sumamt")),
             ("个人账户支付", s.get("acct_pay")), ("现金支付", s.get("psn_cash_pay"))]
    if s.get("balc") is not None:
        money.append(("账户余额", s["balc"]))
    svg = qr_svg(view["qr"]).decode("utf-8")
    lines = [{"name": str(line["name"]), "code": line["med_list_codg"], "cnt": str(line["cnt"]),
              "pric": yuan(int(line["pric"])), "total": yuan(int(line["det_item_fee_sumamt"]))}
             for line in view["lines"]]
    return _template().render(
        seq=int(view["seq"]), mode_zh=view.get("mode_zh", ""), claim_no=view.get("claim_no"),
        cause_zh=view.get("cause_zh", ""), lines=lines,
        money=[(label, yuan(int(v))) for label, v in money if v is not None],
        kind_zh=view["kind_zh"], device=view["device"], digest=view["digest"], qr=view["qr"],
        time=f"{dt.datetime.fromtimestamp(view['time_ms'] / 1000, CHINA):%Y-%m-%d %H:%M}",
        svg=Markup(svg[svg.index("<svg"):]),  # noqa: S704  our own QR SVG, generated from escaped text
        cancellable=view["kind"] == "settlement")
