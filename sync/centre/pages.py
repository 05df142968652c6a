"""The centre's HTML pages, rendered from Jinja2 templates (``sync/centre/templates/*.html``).

Autoescape is on for every template, so a value from the database (a note, a reason, a name) can never
become markup; templates never call an escape function by hand. Filters: ``yuan`` (fen -> "12.34"),
``money`` (signed, with ¥), ``urlquote`` (a path segment) and the Chinese names of stored codes
(``cause_zh``, ``status_zh``, ``med_type_zh``, ``role_zh``, ``class_zh``).
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
# What a reviewer reads is Chinese: the codes stored in the database are shown through these tables.
CAUSE_ZH = {"offline_limit": "超出脱机限额", "pending_review": "有待审核费用", "arrears": "参保暂停（欠费）",
            "card_unreadable": "卡片无法读取（手工录入）", "emergency_observation": "急诊留观"}
STATUS_ZH = {"pending": "待审核", "approved": "已批准", "denied": "已驳回"}
MED_TYPE_ZH = {"11": "普通门诊", "13": "急诊", "14": "门诊慢特病", "41": "定点药店购药"}
ROLE_ZH = {"reviewer": "审核员", "auditor": "稽核员"}
CLASS_ZH = {"A": "甲类", "B": "乙类", "C": "丙类"}


def _zh(table: dict[str, str]):
    return lambda code: table.get(str(code), f"其他（{code}）") if code is not None else "（未记录）"


_ENV.filters.update(yuan=yuan, money=money, urlquote=lambda s: quote(str(s)), cause_zh=_zh(CAUSE_ZH),
                    status_zh=_zh(STATUS_ZH), med_type_zh=_zh(MED_TYPE_ZH), role_zh=_zh(ROLE_ZH),
                    class_zh=_zh(CLASS_ZH))


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
