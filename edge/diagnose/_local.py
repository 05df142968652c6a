"""Checks of this PC: the smart-card service, readers and card, disk, device key and enrolment."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import stat

import trio

from ._context import CACHE_FILE, JOURNAL_FILE, KEY_FILE, Context, in_thread
from ._finding import Finding, fail, ok, warn

# Below this the journal may fail to append and settling stops (DOMAIN.md section 5): broken.
DISK_FAIL_BYTES = 100 * 1024 * 1024
# Below this a few weeks of settlements and a support bundle may not fit: degraded.
DISK_WARN_BYTES = 1024 * 1024 * 1024

CARD_RETRY_S = 0.5

START_PCSCD = ("Start the smart-card service: `systemctl start pcscd` (or scripts/services); on Windows "
               "start the 'Smart Card' service (SCardSvr). Then run diagnose again.")
START_PCSCD_ZH = "启动读卡服务：执行 `systemctl start pcscd`（Windows 上启动“Smart Card”服务），然后重新诊断。"


def _probe_unix_socket(path: str) -> str:
    """'ok', 'missing' or 'refused': can a client reach pcscd's socket at ``path``?"""
    if not os.path.exists(path):
        return "missing"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "ok"
    except OSError:
        return "refused"
    finally:
        s.close()


async def check_pcscd(ctx: Context) -> Finding:
    where = ctx.pcsc_socket
    state = await in_thread(_probe_unix_socket, where)
    if state == "ok":
        return ok("pcscd", f"the smart-card service pcscd is running (socket {where})",
                  f"读卡服务 pcscd 正在运行（{where}）", socket=where)
    if state == "missing":
        return fail("pcscd", f"the smart-card service pcscd is not running (no socket at {where})",
                    f"读卡服务 pcscd 未运行（找不到 {where}）", START_PCSCD, START_PCSCD_ZH, socket=where)
    return fail("pcscd", f"pcscd's socket {where} exists but refuses connections (pcscd crashed?)",
                f"读卡服务的 {where} 无法连接（pcscd 可能已崩溃）",
                "Restart the smart-card service: `systemctl restart pcscd`, then run diagnose again.",
                "重启读卡服务：执行 `systemctl restart pcscd`，然后重新诊断。", socket=where)


def _list_readers() -> list[str]:
    # edge.card.list_readers' body, run here in an abandonable thread: a wedged pcscd blocks
    # SCardEstablishContext, and diagnose must still finish within its bound.
    from edge.card import pcsc

    with pcsc.Context() as pc:
        return pc.readers()


async def check_readers(ctx: Context) -> Finding:
    from edge.card import CardError

    try:
        readers = await in_thread(_list_readers)
    except CardError as exc:
        return fail("readers", f"cannot list card readers: {exc.message}", f"无法列出读卡器：{exc.zh}",
                    START_PCSCD if exc.code == "pcsc_unavailable" else
                    "Unplug and re-plug the reader, then run diagnose again.",
                    START_PCSCD_ZH if exc.code == "pcsc_unavailable" else "请重新插拔读卡器后重新诊断。",
                    code=exc.code)
    if not readers:
        return fail("readers", "no card reader is attached", "未连接读卡器",
                    "Plug the card reader into a USB port (try another port or cable), wait 5 seconds and "
                    "run diagnose again; if it is still missing, install the reader's driver (ccid).",
                    "将读卡器插入 USB 口（可换一个口或数据线），等待 5 秒后重新诊断；仍找不到时安装读卡器驱动（ccid）。",
                    readers=[])
    if ctx.reader and not any(ctx.reader in r for r in readers):
        return fail("readers", f"the configured reader '{ctx.reader}' is not attached (found: {', '.join(readers)})",
                    f"未找到配置的读卡器“{ctx.reader}”（现有：{'、'.join(readers)}）",
                    "Plug in the configured reader, or change the reader name in edge.toml to one listed.",
                    "插上配置的读卡器，或在 edge.toml 中改为上面列出的读卡器名称。", readers=readers)
    return ok("readers", f"{len(readers)} card reader(s) attached: {', '.join(readers)}",
              f"已连接 {len(readers)} 个读卡器：{'、'.join(readers)}", readers=readers)


async def check_card(ctx: Context) -> Finding:
    """Read the card's public identity (no PIN: nothing on the card changes, no try is used)."""
    from edge.card import CardError, read_identity

    try:
        try:
            ident = await read_identity(ctx.reader)
        except CardError as exc:
            if exc.code != "card_removed":
                raise
            # Seen when the card was just inserted (a hand still on it) or the reader was still settling
            # after the previous card: one more read tells a loose card from an empty reader.
            await trio.sleep(CARD_RETRY_S)
            ident = await read_identity(ctx.reader)
    except CardError as exc:
        if exc.code in ("no_card", "card_removed"):
            return warn("card", f"no card to test: {exc.message}", f"无法测试读卡：{exc.zh}",
                        "Insert a social security card (the test card or a patient's, chip first, face up) "
                        "and run diagnose again to test reading.",
                        "插入一张社保卡（测试卡或患者卡，芯片朝前、正面朝上）后重新诊断以测试读卡。", code=exc.code)
        if exc.code in ("pcsc_unavailable", "no_reader"):
            return fail("card", f"cannot test the card: {exc.message}", f"无法测试读卡：{exc.zh}",
                        "Fix the pcscd / readers findings above first.", "请先解决上面读卡服务/读卡器的问题。",
                        code=exc.code)
        return fail("card", f"the card cannot be read: {exc.message}", f"无法读取卡片：{exc.zh}",
                    "Clean the chip and re-insert the card; if another card reads fine this card is damaged "
                    "(key in card number + ID number, settle online or as full payment); if no card reads, "
                    "replace the reader.",
                    "清洁芯片后重新插卡；如果其他卡正常则此卡损坏（手工录入卡号和身份证号，联网或全额垫付结算）；"
                    "如果所有卡都读不了，请更换读卡器。", code=exc.code)
    data = {"reader": ident.reader, "atr": ident.atr, "spec_version": ident.spec_version,
            "region": ident.region, "card_id": ident.redacted().get("card_id"),
            "expires": ident.expires.isoformat() if ident.expires else None}
    today = dt.date.fromtimestamp(ctx.clock_ms() / 1000)
    if ident.expires is not None and today > ident.expires:
        return warn("card", f"the card reads fine (profile {ident.spec_version}) but expired on {ident.expires}",
                    f"卡片读取正常（规范版本 {ident.spec_version}），但已于 {ident.expires} 过期",
                    "The reader works. This card will be refused: the holder must renew it at the social "
                    "security office.", "读卡器正常。此卡结算会被拒绝，请持卡人到社保经办机构换卡。", **data)
    return ok("card", f"card read without PIN: ATR {ident.atr}, profile {ident.spec_version}, region {ident.region}",
              f"读卡正常（未用密码）：ATR {ident.atr}，规范版本 {ident.spec_version}，发卡地 {ident.region}", **data)


def _size(path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def check_disk(ctx: Context) -> Finding:
    def measure():
        where = ctx.state_dir.resolve()
        while not where.exists():  # not created yet: measure the disk it will be created on
            where = where.parent
        usage = shutil.disk_usage(where)
        journal = sum(_size(ctx.path(JOURNAL_FILE + s)) for s in ("", "-wal", "-shm"))
        cache = sum(_size(ctx.path(CACHE_FILE + s)) for s in ("", "-wal", "-shm"))
        return usage, journal, cache

    usage, journal, cache = await in_thread(measure)
    mb = 1024 * 1024
    data = {"free_bytes": usage.free, "total_bytes": usage.total, "journal_bytes": journal, "cache_bytes": cache}
    text = f"{usage.free // mb} MB free of {usage.total // mb} MB; journal {journal / mb:.1f} MB, cache {cache / mb:.1f} MB"
    zh = f"剩余 {usage.free // mb} MB / 共 {usage.total // mb} MB；日志 {journal / mb:.1f} MB，缓存 {cache / mb:.1f} MB"
    if usage.free < DISK_FAIL_BYTES:
        return fail("disk", f"disk almost full: {text}", f"磁盘将满：{zh}",
                    "Free disk space now (delete old downloads, empty the recycle bin); settling stops when the "
                    "journal cannot be written. Never delete files in the state directory.",
                    "立即清理磁盘（删除旧下载文件、清空回收站）；日志无法写入时将停止结算。切勿删除状态目录中的文件。",
                    **data)
    if usage.free < DISK_WARN_BYTES:
        return warn("disk", f"disk space is low: {text}", f"磁盘空间不足：{zh}",
                    "Free some disk space soon (old downloads, temporary files); keep at least 1 GB free.",
                    "请尽快清理磁盘（旧下载、临时文件），至少保留 1 GB 空间。", **data)
    return ok("disk", text, zh, **data)


async def check_key(ctx: Context) -> Finding:
    """The device key exists, is a 32-byte seed and is private to its owner (mode 0600)."""
    from edge.journal import JournalError, load_device_key

    path = ctx.path(KEY_FILE)
    try:
        await in_thread(load_device_key, path)
    except JournalError as exc:
        if exc.code == "key_missing":
            return fail("device_key", f"no device key at {path}: this counter is not enrolled",
                        f"找不到设备密钥 {path}：本机尚未注册",
                        "Enrol the counter: `edge enroll URL TOKEN` with a one-time token from the centre. "
                        "If it was enrolled before, restore the state directory from backup instead.",
                        "用中心发放的一次性令牌注册：`edge enroll URL TOKEN`。如本机以前注册过，请从备份恢复状态目录。",
                        path=str(path), code=exc.code)
        if exc.code == "key_permissions":
            mode = stat.S_IMODE(path.stat().st_mode)
            return fail("device_key", f"the device key {path} is readable by other users (mode {mode:o})",
                        f"设备密钥 {path} 可被其他用户读取（权限 {mode:o}）",
                        f"Run `chmod 600 {path}` (and `chown counter-edge {path}` on a service install), then "
                        "restart the agent. Report it to the centre if the PC is shared.",
                        f"执行 `chmod 600 {path}`（服务安装时再执行 `chown counter-edge {path}`），然后重启程序。"
                        "如该电脑多人共用，请报告医保中心。", path=str(path), mode=f"{mode:o}", code=exc.code)
        return fail("device_key", f"the device key cannot be used: {exc.message}", f"设备密钥不可用：{exc.message}",
                    exc.hint + " Do not re-enrol while entries are unsent; call the centre's help desk.",
                    "在日志未全部上传前不要重新注册；请联系医保中心技术支持。", path=str(path), code=exc.code)
    st = path.stat()
    return ok("device_key", f"device key present, owner-only (mode {stat.S_IMODE(st.st_mode):o}, uid {st.st_uid})",
              f"设备密钥存在，仅所有者可读（权限 {stat.S_IMODE(st.st_mode):o}）", path=str(path),
              mode=f"{stat.S_IMODE(st.st_mode):o}", uid=st.st_uid)


async def check_enrolment(ctx: Context) -> Finding:
    from sync.errors import SyncError

    try:
        cfg = await ctx.device()
    except SyncError as exc:
        missing = exc.code == "not_enrolled"
        return fail("enrolment", exc.message, "本机尚未注册" if missing else "设备注册文件 device.json 已损坏",
                    "Run `edge enroll URL TOKEN` with a one-time token from the centre." if missing else
                    "Restore device.json from the last support bundle or backup; do not re-enrol while "
                    "entries are unsent.",
                    "用中心发放的一次性令牌执行 `edge enroll URL TOKEN`。" if missing else
                    "从上次的支持包或备份恢复 device.json；日志未全部上传前不要重新注册。", code=exc.code)
    return ok("enrolment", f"enrolled as {cfg.device} (site {cfg.site}) with {cfg.centre_url}",
              f"已注册为 {cfg.device}（机构 {cfg.site}），中心 {cfg.centre_url}", device=cfg.device, site=cfg.site,
              centre_url=cfg.centre_url, bundle_key_id=cfg.bundle_key_id, enrolled_at=cfg.enrolled_at)
