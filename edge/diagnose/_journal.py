"""Checks of the journal (on a read-only snapshot): integrity, backlog and the last successful sync."""

from __future__ import annotations

import trio

from ._context import JOURNAL_FILE, Context, in_thread
from .errors import SnapshotError
from ._finding import Finding, fail, ok, warn

HOUR_MS = 3_600_000
# Entries waiting longer than this mean the uplink is not getting through (it retries every few
# minutes while the centre answers): degraded.
BACKLOG_WARN_MS = 1 * HOUR_MS
# Past the offline limit (max_offline_hours, 72 h when no policy is cached) the centre has not seen
# this counter for longer than any offline settlement may rely on: broken. Also broken: a backlog
# this large (about a month of a busy pharmacy) - one upload batch is 500 entries.
DEFAULT_OFFLINE_HOURS = 72
BACKLOG_FAIL_COUNT = 20_000
VERIFY_CHUNK = 1_000   # entries per worker-thread call (~0.1-0.2 s): the budget is checked between chunks
# diagnose must finish in < 10 s: journal verification gets this much of it. Ed25519 verification is
# roughly 5,000-10,000 entries/s on a counter PC, so small journals are verified completely.
VERIFY_BUDGET_S = 4.0
VERIFY_TAIL = 1_000    # acknowledged entries re-verified before the unsent ones (links the chain to them)

CALL_TECH = ("Do not delete or restore anything. Collect a support bundle (`edge support-bundle`) and send it "
             "to the centre's help desk; keep settling only after they confirm. Acknowledged entries are "
             "safe at the centre.",
             "不要删除或还原任何文件。生成支持包（`edge support-bundle`）发给医保中心技术支持，确认后再继续结算。"
             "已确认上传的日志在中心是安全的。")


async def open_journal(ctx: Context):
    """The journal snapshot opened read-only with edge.journal (no signing key)."""
    from edge.journal import JournalStore

    async def make():
        path = await ctx.snapshot(JOURNAL_FILE)
        return await in_thread(
            lambda: JournalStore.open(path, signing_key=None, device=None))
    return await ctx.once("journal", make)


def _journal_problem(check: str, exc: Exception) -> Finding:
    from edge.journal import JournalError

    if isinstance(exc, SnapshotError) and "does not exist" in str(exc):
        return fail(check, f"no journal yet: {exc}", "尚无结算日志（journal.db 不存在）",
                    "Enrol the counter (`edge enroll`) and start the agent; if it settled before, the state "
                    "directory is wrong or lost: check --state-dir / EDGE_STATE_DIR before anything else.",
                    "注册并启动程序；如果本机以前结算过，说明状态目录设置错误或丢失，请先检查 --state-dir。",
                    error=str(exc))
    if isinstance(exc, SnapshotError):
        return fail(check, f"the journal cannot be read: {exc}", "无法读取结算日志（权限不足或文件损坏）",
                    "Run diagnose with sudo (or as the counter-edge user): the state directory is private to the "
                    "agent. If it still fails: " + CALL_TECH[0],
                    "请用 sudo（或 counter-edge 用户）运行诊断，状态目录只允许程序本身读取。仍失败时：" + CALL_TECH[1],
                    error=str(exc))
    if isinstance(exc, JournalError):
        return fail(check, f"the journal cannot be opened: {exc.message}", "结算日志无法打开", *CALL_TECH,
                    code=exc.code, error=exc.message)
    return fail(check, f"the journal cannot be read: {exc}", "结算日志无法读取", *CALL_TECH, error=str(exc))


async def _verify_range(store, first: int, last: int, deadline: float):
    """Verify entries first..last in chunks until done or past ``deadline`` (trio clock).
    Returns (report or None when all good, entries verified, finished)."""
    from edge.journal import GENESIS, verify_entries

    if first > 1:
        before = await in_thread(store.get, first - 1)
        prev = before.hash if before is not None else GENESIS
    else:
        prev = GENESIS
    seq, verified = first, 0
    while seq <= last:
        if trio.current_time() >= deadline:
            return None, verified, False
        upto = min(last, seq + VERIFY_CHUNK - 1)
        chunk = await in_thread(lambda: list(store.raw_entries(seq, upto)))
        report = await in_thread(
            lambda: verify_entries(chunk, store.verify_key, device=store.device, first_seq=seq, first_prev=prev))
        if not report.ok:
            return report, verified + report.count, True
        if report.count < upto - seq + 1:   # rows missing at the end of the range
            return report.__class__(False, report.count, report.head_seq + 1, "missing",
                                    f"entry {report.head_seq + 1} is missing", report.head_seq,
                                    report.head_hash), verified + report.count, True
        verified += report.count
        seq, prev = report.head_seq + 1, report.head_hash
    return None, verified, True


async def check_journal(ctx: Context) -> Finding:
    """Verify entries: hash chain, signatures, seq continuity, body schema (edge.journal.verify).

    Within a time budget, newest first: every unacknowledged entry and the last VERIFY_TAIL
    acknowledged ones (the chain linked to the entry before them), then as much of the older part as
    the budget allows. The centre verified every acknowledged entry when it acknowledged it, so an
    older part left unchecked is reported, not failed; `edge journal verify` checks everything.
    """
    from edge.journal import JournalError

    try:
        store = await open_journal(ctx)
        head, _ = await in_thread(store.head)
        acked = await in_thread(lambda: store.acked_seq)
    except (SnapshotError, JournalError) as exc:
        return _journal_problem("journal", exc)
    deadline = trio.current_time() + VERIFY_BUDGET_S
    start = max(1, min(acked + 1, head + 1) - VERIFY_TAIL)
    base = {"head_seq": head, "acked_seq": acked, "device": store.device, "key_id": store.key_id}

    def damaged(report, verified):
        return fail("journal", f"journal damaged at seq {report.first_bad_seq}: {report.text()}",
                    f"结算日志在第 {report.first_bad_seq} 条处损坏（{report.reason}）", *CALL_TECH,
                    **{**report.to_dict(), **base}, verified=verified)

    report, recent, finished = await _verify_range(store, start, head, deadline)
    if report is not None:
        return damaged(report, recent)
    if not finished:
        return warn("journal", f"verified the newest {recent} of {head - start + 1} recent entries in "
                    f"{VERIFY_BUDGET_S:g} s with no damage; the rest was not checked in time",
                    f"在 {VERIFY_BUDGET_S:g} 秒内校验了最新的 {recent} 条日志，未发现损坏；其余未来得及校验",
                    "Run `edge journal verify` (it checks every entry; it may take a few minutes) when the counter "
                    "is idle.", "在柜台空闲时运行 `edge journal verify` 做完整校验（可能需要几分钟）。",
                    **base, verified=recent, verified_from=start)
    report, older, finished = await _verify_range(store, 1, start - 1, deadline)
    if report is not None:
        return damaged(report, recent + older)
    verified = recent + older
    if not finished:
        return ok("journal", f"journal intact: entries {start}..{head} verified (all unsent ones), {older} of the "
                  f"{start - 1} older acknowledged ones within {VERIFY_BUDGET_S:g} s; the centre holds those",
                  f"结算日志完好：第 {start}～{head} 条（含全部未上传日志）校验通过；较早的已确认日志在中心有存档",
                  **base, verified=verified, verified_from=start, complete=False)
    return ok("journal", f"journal verified: {verified} entries, chain and signatures intact (device {store.device})",
              f"结算日志校验通过：共 {verified} 条，哈希链和签名完好", **base, verified=verified, complete=True)


async def _offline_hours(ctx: Context) -> int:
    from ._cache import open_cache

    try:
        cache = await open_cache(ctx)
        policy = await in_thread(cache.policy)
    except Exception:  # no cache or policy yet: the documented default limit
        return DEFAULT_OFFLINE_HOURS
    if policy is None or policy.offline is None:
        return DEFAULT_OFFLINE_HOURS
    return policy.offline.max_offline_hours


async def check_backlog(ctx: Context) -> Finding:
    from edge.journal import JournalError

    try:
        store = await open_journal(ctx)
        backlog = await in_thread(store.backlog)
        quarantined = await in_thread(store.quarantined)
        acked = await in_thread(lambda: store.acked_seq)
        head, _ = await in_thread(store.head)
    except (SnapshotError, JournalError) as exc:
        return _journal_problem("backlog", exc)
    now = ctx.clock_ms()
    age_ms = None if backlog.oldest_time_ms is None else max(0, now - backlog.oldest_time_ms)
    data = {"unsent": backlog.count, "bytes": backlog.bytes, "oldest_time_ms": backlog.oldest_time_ms,
            "oldest_age_ms": age_ms, "acked_seq": acked, "head_seq": head,
            "quarantined": [{"seq": s, "code": c} for s, c, _ in quarantined]}
    limit_h = await _offline_hours(ctx)
    hours = (age_ms or 0) / HOUR_MS
    send = ("Check the centre reachability findings; once the centre answers the agent sends the backlog by "
            "itself (leave the PC on and the agent running). Never delete the journal.",
            "检查与中心的连接；连通后程序会自动上传积压的日志（请保持电脑开机、程序运行）。切勿删除日志。")
    if backlog.count >= BACKLOG_FAIL_COUNT or (age_ms is not None and age_ms > limit_h * HOUR_MS):
        return fail("backlog", f"{backlog.count} entries unsent, the oldest for {hours:.0f} h (limit {limit_h} h)",
                    f"{backlog.count} 条日志未上传，最早的已积压 {hours:.0f} 小时（上限 {limit_h} 小时）", *send,
                    **data, limit_hours=limit_h)
    if quarantined:
        seqs = ", ".join(str(s) for s, _, _ in quarantined[:10])
        return warn("backlog", f"the centre rejected {len(quarantined)} entries (seq {seqs}); {backlog.count} unsent",
                    f"中心拒收 {len(quarantined)} 条日志（序号 {seqs}）；{backlog.count} 条未上传",
                    "Send a support bundle to the centre's help desk: rejected entries need their review. Settling "
                    "may continue.", "请把支持包发给医保中心技术支持处理被拒收的日志；可以继续结算。", **data)
    if age_ms is not None and age_ms > BACKLOG_WARN_MS:
        return warn("backlog", f"{backlog.count} entries unsent, the oldest for {hours:.1f} h",
                    f"{backlog.count} 条日志未上传，最早的已积压 {hours:.1f} 小时", *send, **data)
    return ok("backlog", f"{backlog.count} entries waiting to be sent (acknowledged up to seq {acked} of {head})",
              f"{backlog.count} 条日志待上传（中心已确认到第 {acked} 条，共 {head} 条）", **data)


async def check_last_sync(ctx: Context) -> Finding:
    """When the centre last answered: the cache's last refresh (downlink) and what it acknowledged."""
    from ._cache import open_cache
    from ._daemon import daemon_status

    seen: dict[str, int] = {}
    status = await daemon_status(ctx)
    if isinstance(status, dict) and isinstance(status.get("last_contact_ms"), int):
        seen["daemon"] = status["last_contact_ms"]   # the running agent's last answer from the centre
    try:
        cache = await open_cache(ctx)
        refreshed = await in_thread(cache.refreshed)
    except Exception:  # no cache yet: the bundles check reports that
        refreshed = None
    if refreshed is not None:
        seen["cache"] = refreshed.wall_ms             # the last downlink refresh that was applied
    source = max(seen, key=seen.__getitem__) if seen else None
    last_ms = seen.get(source) if source else None
    if last_ms is None:
        return warn("last_sync", "no successful sync with the centre is recorded", "没有与中心同步成功的记录",
                    "Start the agent with the centre reachable and wait a few minutes, then run diagnose again.",
                    "在能连上中心时启动程序，等待几分钟后重新诊断。")
    age_h = max(0, ctx.clock_ms() - last_ms) / HOUR_MS
    limit_h = await _offline_hours(ctx)
    data = {"last_success_ms": last_ms, "age_hours": round(age_h, 2), "source": source, "limit_hours": limit_h}
    if age_h > limit_h:
        return fail("last_sync", f"last successful sync {age_h:.0f} h ago (offline limit {limit_h} h)",
                    f"上次同步成功在 {age_h:.0f} 小时前（脱机上限 {limit_h} 小时）",
                    "Restore the network to the centre: offline settlement stops beyond the limit (patients pay in "
                    "full, pending review).", "请尽快恢复与中心的网络：超过上限后不能脱机结算（患者全额垫付待审核）。",
                    **data)
    if age_h > 1:
        return warn("last_sync", f"last successful sync {age_h:.1f} h ago", f"上次同步成功在 {age_h:.1f} 小时前",
                    "Check the centre reachability findings; the agent retries by itself.",
                    "检查与中心的连接；程序会自动重试。", **data)
    return ok("last_sync", f"last successful sync {age_h * 60:.0f} minutes ago", f"上次同步成功在 {age_h * 60:.0f} 分钟前",
              **data)


RESTORE_KEY = ("Do not enrol again and do not delete the journal. Restore {file} from this PC's backup of the state "
               "directory: the right file has key id {expected} (check a candidate with `edge journal pubkey "
               "--state-dir DIR`, DIR holding the candidate's device.key); then restart the agent and run diagnose "
               "again. No backup: call the centre's help desk (the entries unsent so far need their procedure).",
               "不要重新注册，也不要删除结算日志。请从本机状态目录的备份中恢复 {file}：正确文件的密钥号为 {expected}"
               "（可用 `edge journal pubkey --state-dir 备份目录` 核对）；恢复后重启程序并重新诊断。"
               "没有备份时请联系医保中心技术支持（尚未上传的日志需按规程处理）。")


async def _journal_key_id(ctx: Context) -> str | None:
    """The key id the journal was started with (its meta), None when there is no journal yet."""
    if not ctx.path(JOURNAL_FILE).exists():
        return None
    store = await open_journal(ctx)
    return await in_thread(lambda: store.key_id)


async def check_key_match(ctx: Context) -> Finding:
    """device.key against the key ids recorded by the journal and by the enrolment (device.json).

    The journal's chain and the centre's registration both belong to one key. When they disagree, the
    file that differs from the other two is the one to restore: device.key when the journal and the
    enrolment agree on another key; journal.db or device.json when the key matches the other one. An
    enrolment written before key ids were recorded names none: the journal alone decides then.
    """
    from edge.journal import JournalError, KeyMissing, load_device_key
    from sync.errors import SyncError
    from sync.keys import key_id

    from ._context import DEVICE_FILE, KEY_FILE

    key_path = ctx.path(KEY_FILE)
    try:
        have: str | None = key_id((await in_thread(load_device_key, key_path)).verify_key)
    except KeyMissing:
        have = None
    except JournalError as exc:
        return warn("key_match", f"cannot compare the device key: {exc.message}", "无法核对设备密钥（密钥文件不可用）",
                    "Fix the device_key finding first, then run diagnose again.", "请先解决“设备密钥”一项，再重新诊断。",
                    code=exc.code)
    try:
        journal_id = await _journal_key_id(ctx)
    except (SnapshotError, JournalError) as exc:
        return warn("key_match", f"cannot compare the device key with the journal: {exc}", "无法核对设备密钥与结算日志",
                    "Fix the journal finding first, then run diagnose again.", "请先解决“结算日志”一项，再重新诊断。")
    try:
        enrolled_id = (await ctx.device()).device_key_id
    except SyncError:
        enrolled_id = None   # not enrolled or damaged: the enrolment check reports it
    data = {"key_id": have, "journal_key_id": journal_id, "enrolment_key_id": enrolled_id}
    known = {name: kid for name, kid in ((JOURNAL_FILE, journal_id), (DEVICE_FILE, enrolled_id)) if kid is not None}
    if not known:
        return ok("key_match", "no journal or enrolment records a key yet: nothing to compare",
                  "尚无结算日志或注册记录，无需核对密钥", **data)
    if have is not None and all(kid == have for kid in known.values()):
        names = " and ".join(known)
        return ok("key_match", f"device.key (key id {have}) is the key of {names}",
                  f"设备密钥（密钥号 {have}）与{'、'.join(known)}一致", **data)

    def restore(file: str, expected: str, finding: str, finding_zh: str) -> Finding:
        return fail("key_match", finding, finding_zh, RESTORE_KEY[0].format(file=file, expected=expected),
                    RESTORE_KEY[1].format(file=file, expected=expected), restore=file, expected_key_id=expected, **data)

    if have is None:
        expected = journal_id or enrolled_id or ""
        return restore(KEY_FILE, expected, f"device.key is missing but {' and '.join(known)} belong to key {expected}",
                       f"设备密钥文件 device.key 丢失，结算日志/注册记录属于密钥 {expected}：需恢复 device.key")
    if journal_id is not None and enrolled_id is not None and journal_id != enrolled_id:
        if have == enrolled_id:
            return restore(JOURNAL_FILE, have, f"journal.db was started with key {journal_id}, but device.key and "
                           f"device.json are key {have}: the journal belongs to another key",
                           f"结算日志 journal.db 属于密钥 {journal_id}，与本机密钥 {have} 和注册记录不符：需恢复 journal.db")
        if have == journal_id:
            return restore(DEVICE_FILE, have, f"device.json was enrolled with key {enrolled_id}, but device.key and "
                           f"journal.db are key {have}: the enrolment belongs to another key",
                           f"注册记录 device.json 属于密钥 {enrolled_id}，与本机密钥 {have} 和结算日志不符："
                           "需恢复 device.json")
        return fail("key_match", f"device.key ({have}), journal.db ({journal_id}) and device.json ({enrolled_id}) "
                    "belong to three different keys: the state directory was put together from different counters",
                    f"device.key（{have}）、journal.db（{journal_id}）和 device.json（{enrolled_id}）分属三个不同的密钥："
                    "状态目录混入了其他柜台的文件", *CALL_TECH, **data)
    expected = journal_id or enrolled_id or ""
    return restore(KEY_FILE, expected, f"device.key is key {have}, but {' and '.join(known)} belong to key {expected}: "
                   "this key cannot continue the journal or sign for the enrolled device",
                   f"设备密钥文件 device.key（密钥号 {have}）与结算日志/注册记录的密钥 {expected} 不符：需恢复 device.key",
                   )
