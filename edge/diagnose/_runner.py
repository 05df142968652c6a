"""The table of checks and the runner.

All checks run concurrently in one nursery, each under its own bound: a check that hangs (a wedged
pcscd, a centre that accepts TCP and never answers) becomes a ``fail`` finding naming the bound,
and a check that crashes becomes a ``fail`` finding naming the exception; neither stops the others.
So the whole run is bounded by the largest entry of the table (about 8 s), whatever is broken.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Mapping

import trio

from . import _cache, _centre, _daemon, _journal, _local, _timefloor
from ._context import Context
from ._finding import FAIL, OK, WARN, Finding, exit_code, fail


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], Awaitable[Finding]]
    bound_s: float
    title: str          # English
    title_zh: str


CHECKS: tuple[Check, ...] = (
    Check("pcscd", _local.check_pcscd, 3, "smart-card service (pcscd)", "读卡服务"),
    Check("readers", _local.check_readers, 5, "card readers", "读卡器"),
    Check("card", _local.check_card, 6, "card in reader (ATR, profile, identity; no PIN)", "卡片读取（不验密码）"),
    Check("disk", _local.check_disk, 3, "free disk and journal size", "磁盘空间与日志大小"),
    Check("device_key", _local.check_key, 3, "device key (owner-only)", "设备密钥"),
    Check("enrolment", _local.check_enrolment, 3, "enrolment (device.json)", "设备注册"),
    Check("config", _daemon.check_config, 3, "configuration (edge.toml)", "配置文件"),
    Check("journal", _journal.check_journal, 7, "journal integrity (verify)", "结算日志完整性"),
    Check("key_match", _journal.check_key_match, 6, "device key vs the journal's and the enrolment's key ids",
          "设备密钥与结算日志、注册记录是否一致"),
    Check("backlog", _journal.check_backlog, 6, "unsent entries and the oldest one's age", "未上传日志"),
    Check("last_sync", _journal.check_last_sync, 6, "last successful sync", "上次同步"),
    Check("bundles", _cache.check_bundles, 6, "bundle versions and ages vs offline limits", "目录与政策数据"),
    Check("centre_dns", _centre.check_dns, _centre.DNS_S + 1, "centre: DNS", "中心：域名解析"),
    Check("centre_tcp", _centre.check_tcp, _centre.TCP_S + 1, "centre: TCP", "中心：网络连接"),
    Check("centre_tls", _centre.check_tls, _centre.TLS_S + 1, "centre: TLS", "中心：加密连接"),
    Check("centre_signed", _centre.check_signed_request, _centre.HTTP_S + 1, "centre: signed request", "中心：签名请求"),
    Check("clock", _centre.check_clock, _centre.HTTP_S + 1, "clock skew vs the centre", "时间偏差"),
    Check("time_floor", _timefloor.check_time_floor, _daemon.DAEMON_S + 4,
          "clock vs the latest time this counter has seen", "电脑时钟与本机已记录的最新时间"),
    Check("daemon", _daemon.check_daemon, _daemon.DAEMON_S + 1, "agent running, API answering", "程序运行状态"),
)
NAMES = tuple(c.name for c in CHECKS)


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    state_dir: str
    elapsed_s: float
    durations_s: Mapping[str, float] = field(default_factory=dict)   # per check: where the time went

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)

    @property
    def status(self) -> str:
        return {0: "healthy", 1: "degraded", 2: "broken"}[self.exit_code]

    def by_check(self) -> dict[str, Finding]:
        return {f.check: f for f in self.findings}

    def to_dict(self) -> dict:
        return {"status": self.status, "exit_code": self.exit_code, "state_dir": self.state_dir,
                "elapsed_s": round(self.elapsed_s, 3),
                "findings": [{**f.to_dict(), "duration_s": round(self.durations_s.get(f.check, 0.0), 3)}
                             for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str)


async def _one(check: Check, ctx: Context) -> Finding:
    with trio.move_on_after(check.bound_s):
        try:
            return await check.run(ctx)
        except Exception as exc:  # a bug in one check must not hide every other finding
            return fail(check.name, f"the check itself failed: {exc.__class__.__name__}: {exc}",
                        f"检查程序出错：{exc.__class__.__name__}",
                        "Send the support bundle to the centre's help desk (this is a bug in diagnose).",
                        "请把支持包发给医保中心技术支持（诊断程序缺陷）。", error=repr(exc))
    return fail(check.name, f"no result within {check.bound_s:g} s", f"{check.bound_s:g} 秒内无结果",
                "Run diagnose again; if this check keeps timing out, restart the PC and send a support bundle.",
                "重新诊断；如果此项一直超时，请重启电脑并发送支持包。", bound_s=check.bound_s)


async def run(ctx: Context | None = None, *, only: Iterable[str] | None = None) -> Report:
    """Run the checks (all, or those named in ``only``) and return their findings in table order."""
    ctx = ctx or Context()
    wanted = set(only) if only is not None else set(NAMES)
    unknown = wanted - set(NAMES)
    if unknown:
        raise ValueError(f"unknown checks: {', '.join(sorted(unknown))} (known: {', '.join(NAMES)})")
    table = [c for c in CHECKS if c.name in wanted]
    results: dict[str, Finding] = {}
    durations: dict[str, float] = {}
    start = trio.current_time()
    own_dir = None
    if ctx.workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="edge-diagnose-", ignore_cleanup_errors=True)
        ctx.workdir = Path(own_dir.name)
    ctx._memo.clear()   # each run looks afresh: nothing found by an earlier run is reused
    try:
        async with trio.open_nursery() as nursery:
            for check in table:
                async def one(check=check):
                    t0 = trio.current_time()
                    results[check.name] = await _one(check, ctx)
                    durations[check.name] = trio.current_time() - t0
                nursery.start_soon(one)
    finally:
        # Close the snapshots in a thread (a store's lock may still be held by an abandoned query);
        # shielded so a cancelled run still cleans up, bounded so cleanup never becomes the hang.
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            for key in ("journal", "cache"):
                kind_value = ctx._memo.get(key)
                if kind_value and kind_value[0] == "ok":
                    await trio.to_thread.run_sync(kind_value[1].close, abandon_on_cancel=True)
        ctx._memo.clear()
        if own_dir is not None:
            own_dir.cleanup()
            ctx.workdir = None
    return Report(tuple(results[c.name] for c in table), str(ctx.state_dir), trio.current_time() - start, durations)


_MARK = {OK: "[ OK ]", WARN: "[WARN]", FAIL: "[FAIL]"}


def render_text(report: Report, *, lang: str = "both") -> str:
    """The technician's view: one line per check, the next step under anything not ok."""
    titles = {c.name: c for c in CHECKS}
    lines = [f"edge diagnose — {report.state_dir}"]
    for f in report.findings:
        c = titles[f.check]
        if lang in ("en", "both"):
            lines.append(f"{_MARK[f.status]} {c.title}: {f.finding}")
        if lang in ("zh", "both"):
            lines.append(f"{'       ' if lang == 'both' else _MARK[f.status] + ' '}{c.title_zh}：{f.finding_zh}")
        if f.status != OK:
            if lang in ("en", "both") and f.next_step:
                lines.append(f"       -> {f.next_step}")
            if lang in ("zh", "both") and f.next_step_zh:
                lines.append(f"       -> {f.next_step_zh}")
    n_fail = sum(f.status == FAIL for f in report.findings)
    n_warn = sum(f.status == WARN for f in report.findings)
    zh_status = {"healthy": "正常", "degraded": "部分异常", "broken": "故障"}[report.status]
    lines.append(f"Result: {report.status.upper()} ({n_fail} failed, {n_warn} warnings) / 结果：{zh_status}"
                 f"（{n_fail} 项失败，{n_warn} 项警告） — exit {report.exit_code}")
    return "\n".join(lines)
