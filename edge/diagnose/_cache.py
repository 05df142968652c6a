"""Check of the cached bundles (on a read-only snapshot): versions and ages against the offline limits."""

from __future__ import annotations

from typing import Any

from ._context import CACHE_FILE, Context, in_thread
from .errors import SnapshotError
from ._finding import Finding, fail, ok, warn

HOUR_MS = 3_600_000
REQUIRED = ("catalogue", "policy")        # nothing settles without them, online or offline
OFFLINE_NEEDS = ("persons", "hotlist")    # offline settlement needs these (DOMAIN.md sections 3 and 6)

REFRESH = ("Restore the connection to the centre and leave the agent running: it fetches fresh bundles by itself "
           "(see the centre reachability findings).",
           "恢复与医保中心的网络连接并保持程序运行，程序会自动下载最新数据（见上面与中心连接的检查）。")


async def open_cache(ctx: Context):
    from edge.cache import Cache

    async def make():
        path = await ctx.snapshot(CACHE_FILE)
        return await in_thread(Cache.open, path)
    return await ctx.once("cache", make)


async def check_bundles(ctx: Context) -> Finding:
    from edge.cache import CacheError
    from edge.offline import cache_age_ms

    try:
        cache = await open_cache(ctx)
        versions = await in_thread(cache.versions)
        policy = await in_thread(cache.policy)
        refreshed = await in_thread(cache.refreshed)
    except SnapshotError as exc:
        return fail("bundles", f"no cached bundles: {exc}", "本地没有医保目录和政策数据（cache.db 不存在）", *REFRESH,
                    error=str(exc))
    except CacheError as exc:
        return fail("bundles", f"the cache cannot be read: {exc.message}", "本地缓存无法读取",
                    "Stop the agent, move cache.db aside (it is rebuilt from the centre; the journal is not "
                    "touched) and start the agent with the centre reachable.",
                    "停止程序，把 cache.db 移到别处（缓存会从中心重新下载，不影响结算日志），在能连上中心时重新启动。",
                    error=exc.message)
    now = ctx.clock_ms()
    data: dict[str, Any] = {"versions": {k: {"version": v["version"], "created": v["created"], "applied_ms": v["applied_ms"]}
                         for k, v in versions.items()},
            "refreshed_ms": refreshed.wall_ms if refreshed else None}
    missing = [k for k in REQUIRED if k not in versions]
    if missing:
        return fail("bundles", f"missing bundles: {', '.join(missing)}: nothing can be settled",
                    f"缺少数据：{'、'.join(missing)}，无法结算", *REFRESH, **data, missing=missing)
    limits = policy.offline if policy is not None else None
    listing = ", ".join(f"{k} v{versions[k]['version']}" for k in sorted(versions))
    age = cache_age_ms(now_wall_ms=now, refreshed_wall_ms=refreshed.wall_ms if refreshed else None)
    data["age_ms"] = age
    if limits is None:
        return warn("bundles", f"{listing}; the policy has no offline limits: offline settlement is off",
                    f"{listing}；政策未配置脱机限额，不能脱机结算",
                    "Ask the centre to publish offline limits for this region if offline settlement is wanted.",
                    "如需脱机结算，请联系医保中心为本地区发布脱机限额。", **data)
    limit_h = limits.max_offline_hours
    data["max_offline_hours"] = limit_h
    if age is None:
        return fail("bundles", f"{listing}; the cache age cannot be established (never refreshed, or the clock moved "
                    "back): offline settlement is refused", f"{listing}；无法确定数据更新时间，不能脱机结算",
                    "Check the clock finding, then restore the connection so the agent refreshes the bundles.",
                    "先检查时间是否正确，再恢复网络让程序更新数据。", **data)
    hours = age / HOUR_MS
    if age > limit_h * HOUR_MS:
        return fail("bundles", f"bundles are stale: last refreshed {hours:.0f} h ago, offline limit {limit_h} h: "
                    f"offline visits become full payment ({listing})",
                    f"数据已过期：{hours:.0f} 小时未更新（上限 {limit_h} 小时），脱机就诊只能全额垫付", *REFRESH, **data)
    lacking = [k for k in OFFLINE_NEEDS if k not in versions]
    if lacking:
        return warn("bundles", f"{listing}; missing {', '.join(lacking)}: offline visits become full payment",
                    f"缺少 {'、'.join(lacking)}，脱机就诊只能全额垫付", *REFRESH, **data, missing=lacking)
    if age > limit_h * HOUR_MS / 2:
        return warn("bundles", f"bundles refreshed {hours:.0f} h ago: more than half of the {limit_h} h offline limit",
                    f"数据已 {hours:.0f} 小时未更新，超过脱机上限 {limit_h} 小时的一半", *REFRESH, **data)
    return ok("bundles", f"{listing}; refreshed {hours:.1f} h ago (offline limit {limit_h} h)",
              f"数据版本 {listing}；{hours:.1f} 小时前更新（脱机上限 {limit_h} 小时）", **data)
