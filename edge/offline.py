"""Online / offline / full-payment decision (DOMAIN.md section 6). Pure: no clock, no I/O.

Theory of operation
-------------------
The counter gathers :class:`Facts` (what the card, the cache, the per-card offline counters and the
last centre contact say) and asks :func:`decide` which way the visit goes. The table, in order
(first match wins)::

    card hotlisted / expired / PIN blocked      -> refused            (online and offline)
    emergency observation                       -> full_payment  emergency_observation
    centre reachable                            -> online        (the centre decides the rest;
                                                                   its refusals map via after_centre)
    --- offline from here; every limit fails closed (unknown counts as failed) ---
    clock fault (below the time floor, or far    -> full_payment  offline_limit  (clock)
      from the centre's: edge.counter.clock)
    card keyed in (not physically read)          -> full_payment  card_unreadable
    card from another region (异地), no 异地就医   -> full_payment  other_region
      filing for this site's region in the snapshot
    no person snapshot                           -> full_payment  offline_limit  (person_snapshot)
    insured status suspended                     -> full_payment  arrears
    earlier bills under review                   -> full_payment  pending_review
    policy has no offline limits                 -> full_payment  offline_limit  (offline_limits)
    cache age unknown or > max_offline_hours     -> full_payment  offline_limit  (cache_age)
    counters unreadable or visits >= max          -> full_payment  offline_limit  (offline_visits)
    otherwise                                    -> offline, acct_limit = allowance − account used

The visit fund cap can only be checked once the engine has computed the fund part, so an offline
decision goes through :func:`check_fund` with the engine's ``hifp_pay`` before it is final;
check_fund also refuses an offline decision that does not carry the limits :func:`decide` checks
(so no path, whatever led to it, journals ``mode: offline`` with unchecked limits).

Every offline decision lists the limits it checked with their value and bound (``limits``); that map
goes into the journal entry's ``basis.limits`` so re-adjudication sees what the edge saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from edge.settle import OfflineLimits

HOUR_MS = 3_600_000
# A wall clock that reads more than this behind the monotonic clock since the last refresh was set
# back (by hand or by a bad NTP source): the cache age is then unknown and offline is refused.
CLOCK_SKEW_MS = 120_000

ONLINE, OFFLINE, FULL_PAYMENT, REFUSED = "online", "offline", "full_payment", "refused"
CAUSES = ("offline_limit", "pending_review", "arrears", "card_unreadable", "emergency_observation", "other_region")

# Clerk-readable words for each full-payment cause and refusal (the page and the receipt show these).
CAUSE_ZH = {
    "offline_limit": "脱机限额不满足",
    "pending_review": "有待审核的费用",
    "arrears": "参保状态暂停（单位欠费）",
    "card_unreadable": "卡片无法读取（手工录入）且无法联网",
    "emergency_observation": "急诊留观，待定是否住院",
    "other_region": "异地参保人员未办理本地异地就医备案，脱机不能结算",
}
# The centre refused a request for its signing time (HTTP 401 stale_request), before this counter read the
# centre's clock itself (then edge.counter.clock says by how much).
CENTRE_REFUSED_TIME_ZH = ("电脑时钟与医保中心相差超过 5 分钟，医保中心拒绝了本机的请求：请校准电脑时间（北京时间）后再结算；"
                          "在此之前不能脱机结算")
REFUSAL_ZH = {
    "card_hotlisted": "此卡已挂失、补换或被锁定，不能结算",
    "card_expired": "此卡已过有效期，不能结算",
    "pin_blocked": "密码已锁定，不能使用此卡结算",
    "unknown_person": "医保中心查无此参保人，不能结算",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the decision depends on. ``None`` means "could not be established"."""

    centre_reachable: bool
    card_hotlisted: bool = False
    card_expired: bool = False
    pin_blocked: bool = False
    keyed_in: bool = False
    observation: bool = False
    person_known: bool = False
    person_status: str | None = None          # "active" | "suspended"
    pending_review: bool = False
    limits: OfflineLimits | None = None
    cache_age_ms: int | None = None
    offline_visits: int | None = None          # offline visits of this card since its last online one
    offline_acct_used: int | None = None       # account fen paid offline since then
    clock_fault: str | None = None             # edge.counter.clock fault code; None = the clock is trusted
    clock_zh: str = ""                         # what the clerk is told to do about it
    other_region: bool = False                 # card issued in another region than the site's (异地)
    region_filed: bool = False                 # the snapshot has a 异地就医 filing for this site's region
    card_region: str | None = None             # the card's issuing region (named to the clerk when 异地)


@dataclass(frozen=True, slots=True)
class Decision:
    mode: str                                  # online | offline | full_payment | refused
    cause: str | None = None                   # full_payment cause or refusal code
    detail: str = ""                           # English, for logs and the journal
    zh: str = ""                               # Chinese, for the clerk
    acct_limit: int | None = None              # offline account allowance left (engine acct_limit)
    limits: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "cause": self.cause, "detail": self.detail, "zh": self.zh,
                "acct_limit": self.acct_limit, "limits": {k: list(v) for k, v in self.limits.items()}}


def cache_age_ms(*, now_wall_ms: int, refreshed_wall_ms: int | None, now_mono_ns: int | None = None,
                 refreshed_mono_ns: int | None = None, same_boot: bool = False) -> int | None:
    """Age of the cache since its last successful refresh, or None when it cannot be trusted.

    Wall clock is the measure (it survives reboots); within one boot the monotonic clock checks it:
    a wall clock behind the monotonic one, or a monotonic clock running backwards, means the age
    is unknown. The larger of the two readings is used, so moving the clock never makes the cache
    look younger.
    """
    if refreshed_wall_ms is None:
        return None
    wall = now_wall_ms - refreshed_wall_ms
    if wall < 0:
        return None
    if same_boot:
        if now_mono_ns is None or refreshed_mono_ns is None:
            return None
        mono = (now_mono_ns - refreshed_mono_ns) // 1_000_000
        if mono < 0 or wall + CLOCK_SKEW_MS < mono:
            return None
        return max(wall, mono)
    return wall


def region_filed(snapshot: Any, site_region: str, day: Any) -> bool:
    """Does a person snapshot carry a 异地就医 filing (备案) for ``site_region`` valid on ``day``?
    Filings: ``offsite_filings: [{"region": "330300", "begndate"?: date, "enddate"?: date}]``."""
    import datetime as _dt
    filings = snapshot.get("offsite_filings") if hasattr(snapshot, "get") else None
    for f in filings if isinstance(filings, list) else []:
        if not isinstance(f, dict) or f.get("region") != site_region:
            continue
        try:
            begin = _dt.date.fromisoformat(f["begndate"]) if f.get("begndate") else None
            end = _dt.date.fromisoformat(f["enddate"]) if f.get("enddate") else None
        except (TypeError, ValueError):
            continue          # an unreadable filing covers nothing (fail closed)
        if (begin is None or begin <= day) and (end is None or day <= end):
            return True
    return False


def _hours_up(ms: int) -> int:
    return -(-ms // HOUR_MS)


def _full(cause: str, detail: str, zh_detail: str = "", limits: dict | None = None) -> Decision:
    zh = CAUSE_ZH[cause] + (f"：{zh_detail}" if zh_detail else "")
    return Decision(FULL_PAYMENT, cause, detail, zh, None, dict(limits or {}))


def _refuse(code: str, detail: str) -> Decision:
    return Decision(REFUSED, code, detail, REFUSAL_ZH[code])


def decide(f: Facts) -> Decision:
    """Which way this visit goes, before the engine runs (see the module docstring for the table)."""
    if f.card_hotlisted:
        return _refuse("card_hotlisted", "card is on the hotlist (lost, reissued or blocked)")
    if f.card_expired:
        return _refuse("card_expired", "card is past its valid-until date")
    if f.pin_blocked:
        return _refuse("pin_blocked", "card PIN is blocked")
    if f.observation:
        return _full("emergency_observation", "emergency observation: ratio unknown until admission is decided")
    if f.centre_reachable:
        return Decision(ONLINE, detail="centre reachable", zh="联网结算")
    if f.clock_fault is not None:
        return _full("offline_limit", f"clock: {f.clock_fault}: the PC clock cannot be trusted, so neither can "
                     "the cache age nor the offline counters", f.clock_zh or "电脑时钟不正确，请校准电脑时间（北京时间）")
    if f.keyed_in:
        return _full("card_unreadable", "keyed-in card while offline: never settled offline")
    if f.other_region and not f.region_filed:
        return _full("other_region", f"card issued in another region ({f.card_region or 'unknown'}), no 异地就医 "
                     "filing for this site's region in the snapshot: settled only online (the centre settles by the "
                     "home region's rules)", f"此卡由 {f.card_region} 地区签发" if f.card_region else "")
    if not f.person_known:
        return _full("offline_limit", "person_snapshot: no person snapshot in the cache (unknown person)",
                     "本地无此参保人信息")
    if f.person_status != "active":
        return _full("arrears", f"insured status {f.person_status!r} in the snapshot")
    if f.pending_review:
        return _full("pending_review", "the person has earlier bills under review")
    lim = f.limits
    if lim is None:
        return _full("offline_limit", "offline_limits: the policy bundle has no offline limits",
                     "政策未配置脱机限额")
    checked: dict[str, list[int]] = {}
    max_ms = lim.max_offline_hours * HOUR_MS
    if f.cache_age_ms is None or f.cache_age_ms < 0:
        return _full("offline_limit", "cache_age: the age of the cached data cannot be established "
                     "(never refreshed, or the clock moved)", "无法确定本地数据的更新时间")
    hours = _hours_up(f.cache_age_ms)
    checked["cache_age_hours"] = [hours, lim.max_offline_hours]
    if f.cache_age_ms > max_ms:
        return _full("offline_limit", f"cache_age: {hours} h > max_offline_hours {lim.max_offline_hours}",
                     f"本地数据已 {hours} 小时未更新（上限 {lim.max_offline_hours} 小时）", checked)
    if f.offline_visits is None or f.offline_acct_used is None or f.offline_visits < 0 or f.offline_acct_used < 0:
        return _full("offline_limit", "offline_visits: this card's offline counters cannot be read",
                     "无法读取此卡的脱机计数", checked)
    checked["offline_visits"] = [f.offline_visits + 1, lim.offline_max_visits]
    if f.offline_visits >= lim.offline_max_visits:
        return _full("offline_limit", f"offline_visits: {f.offline_visits} offline visits since the last online "
                     f"settlement, at most {lim.offline_max_visits}",
                     f"此卡脱机就诊已 {f.offline_visits} 次（上限 {lim.offline_max_visits} 次）", checked)
    left = max(0, lim.offline_acct_allowance - f.offline_acct_used)
    checked["acct_allowance_left"] = [left, lim.offline_acct_allowance]
    return Decision(OFFLINE, detail="all offline limits hold", zh="脱机结算（网络中断）", acct_limit=left,
                    limits=checked)


# The limits an offline decision from :func:`decide` always carries (check_fund adds visit_fund).
CHECKED_BY_DECIDE = ("cache_age_hours", "offline_visits", "acct_allowance_left")


def check_fund(decision: Decision, hifp_pay: int, limits: OfflineLimits | None) -> Decision:
    """Second step for an offline decision: the visit's fund pay against ``offline_visit_fund_cap``."""
    if decision.mode != OFFLINE:
        return decision
    if decision.acct_limit is None or not all(k in decision.limits for k in CHECKED_BY_DECIDE):
        return _full("offline_limit", "offline decision without its checked limits (cache age, visits, account "
                     "allowance): not settled offline", "脱机限额未经核验", decision.limits)
    if limits is None:
        return _full("offline_limit", "offline_limits: the policy bundle has no offline limits",
                     "政策未配置脱机限额", decision.limits)
    checked = {**decision.limits, "visit_fund": [hifp_pay, limits.offline_visit_fund_cap]}
    if hifp_pay > limits.offline_visit_fund_cap:
        return _full("offline_limit", f"visit_fund: fund pay {hifp_pay} fen > offline_visit_fund_cap "
                     f"{limits.offline_visit_fund_cap} fen",
                     _yuan_pair(hifp_pay, limits.offline_visit_fund_cap), checked)
    return replace(decision, limits=checked)


def _yuan_pair(value: int, cap: int) -> str:
    from edge.settle import yuan
    return f"本次统筹支付 ¥{yuan(value)} 超过脱机上限 ¥{yuan(cap)}"


def after_centre(code: str, message: str = "") -> Decision | None:
    """Map the centre's typed refusal of an online settlement; None = an engine error to show as is."""
    if code == "suspended":
        return _full("arrears", message or "centre: insured status suspended")
    if code == "pending_review":
        return _full("pending_review", message or "centre: earlier bills under review")
    if code in ("card_hotlisted", "unknown_person"):
        return _refuse(code, message or f"centre: {code}")
    if code == "other_region":
        # A card from another region whose person the centre does not hold (sync.centre.online: its message
        # names the region as "region NNNNNN"): a full payment the patient claims back, saying which region.
        found = re.search(r"region (\d{6})", message or "")
        where = f"此卡由 {found.group(1)} 地区签发，" if found else ""
        return _full("other_region", message or "centre: card from another region, person not held there",
                     where + "医保中心没有此参保人及其参保地的结算政策：请患者全额垫付，凭票据回参保地报销")
    if code == "clock_skew":
        # The centre refused the request's signing time: the PC clock is off (edge.counter.clock). Offline
        # cannot be trusted either: a full payment, and the clerk is told to fix the clock.
        return _full("offline_limit", "clock: off_from_centre: " + (message or "the centre refused the request's time"),
                     CENTRE_REFUSED_TIME_ZH)
    return None
