"""Check of the PC's clock against the counter's time floor (edge.counter.clock): the latest time this
counter has seen (its last journal entry, the centre's clock as last seen, the newest bundle's issue
time). A clock below it was set back; the agent then settles nothing offline until the clock is fixed.

The running agent's own word comes first (``/api/status`` ``clock``: it also knows the centre's clock
by the monotonic clock, and whether the centre's time outranked entries timed by a clock that was
ahead); without the agent, the floor is worked out from read-only snapshots of the journal and cache.
"""

from __future__ import annotations

from typing import Any

from ._cache import open_cache
from ._context import Context, in_thread
from ._daemon import daemon_status
from ._finding import Finding, fail, ok, warn
from ._journal import open_journal

FIX = ("Set the PC's clock to Beijing time (or turn on automatic time sync), then settle again; until then "
       "nothing settles offline (full payment). Do not move the clock back to make the warning go away.",
       "请把电脑时间校准为北京时间（或开启自动对时）后再结算；在此之前不能脱机结算（按全额垫付处理）。")


def _floor_of(journal, cache):
    """The floor from the files (no monotonic reading: another process), as the agent loads it at start."""
    from edge.counter import clock

    seq, _ = journal.head()
    last = journal.get(seq) if seq else None
    raw = cache.centre_seen()
    seen = clock.CentreSeen.from_dict(raw) if raw else None
    outranked = seen is not None and seen.agreed and last is not None and last.seq <= seen.head_seq
    created = [v.get("created") for v in cache.versions().values()]
    floor = clock.floor_of(None if outranked or last is None else last.time,
                           *[c for c in created if isinstance(c, int) and not isinstance(c, bool)],
                           None if seen is None else seen.centre_ms - clock.MAX_CENTRE_SKEW_MS)
    refreshed = cache.refreshed()
    if refreshed is not None:
        floor = clock.raise_floor(floor, clock.refresh_floor(refreshed.wall_ms, 0, refreshed.boot_id, None).wall_ms, None)
    return floor, seen


async def check_time_floor(ctx: Context) -> Finding:
    from edge.counter import clock

    status = await daemon_status(ctx)
    if isinstance(status, dict):
        fault = status.get("clock")
        if isinstance(fault, dict):
            return fail("time_floor", f"the agent reports a clock fault ({fault.get('code')}): {fault.get('detail')}",
                        str(fault.get("zh") or "电脑时钟不正确"), *FIX, code=fault.get("code"))
        if "clock" in status:
            return ok("time_floor", "the agent reports no clock fault", "程序未发现电脑时钟问题")
    try:
        journal = await open_journal(ctx)
        cache = await open_cache(ctx)
        floor, seen = await in_thread(_floor_of, journal, cache)
    except Exception as exc:     # no journal or cache yet, or unreadable: their own checks say why
        return warn("time_floor", f"cannot work out the time floor: {exc.__class__.__name__}",
                    "无法确定本机已记录的最新时间", "See the journal and bundles findings.", "见日志和目录数据两项检查。")
    now = ctx.clock_ms()
    fault = clock.fault(now, floor)
    data: dict[str, Any] = {"now_ms": now, "floor_ms": None if floor is None else floor.wall_ms,
            "centre_seen_ms": None if seen is None else seen.centre_ms}
    if fault is not None:
        return fail("time_floor", fault.detail, fault.zh, *FIX, code=fault.code, **data)
    return ok("time_floor", "the PC clock is not below the latest time this counter has seen",
              "电脑时钟不早于本机已记录的最新时间", **data)
