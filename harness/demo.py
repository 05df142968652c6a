"""The demo: a centre and a counter on this machine, with the sample data (``scripts/demo``).

Everything runs in one trio process and one nursery: the centre (SQLite in a temporary directory,
the sample bundles published), the enrolled counter daemon, and - when pcscd and vsmartcard's vpcd
are there - the virtual card (张三) in the first virtual reader. Without them the counter uses the
simulated card desk and every screen says so (模拟读卡).

``--scripted`` plays a whole day without a person and exits: online visits, a centre outage with
offline visits and a full-payment claim, the centre back, the backlog sent; then it prints what
reached the centre. It is also the integration smoke test (tests/counter/test_demo.py).

Run from the checkout: ``python -m harness.demo [--scripted] [--port N] [--keep]`` (what scripts/demo
runs). It lives in the harness, not in a product package, because it boots both products.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sync" / "centre" / "sample"
VCARD = ROOT / "firmware-interfaces" / "vcard" / "vcard.py"
CARD_FILE = ROOT / "firmware-interfaces" / "vcard" / "cards" / "zhangsan.json"
VPCD_PORT = 35963
SITE = "S330300001"

# Sample persons (sync/centre/sample/persons.json) the scripted day uses.
ZHANGSAN = {"card_id": "330300D15600000500A1B2C3D4E5F607", "certno": "330302199001011235", "psn_name": "张三"}
LISI = {"card_id": "330300D15600000500B7C8D9E0F1A2B3", "certno": "330303198506152625", "psn_name": "李四"}
WANGFANG = {"card_id": "330300D15600000500000000000003E8", "certno": "33030219500101100X", "psn_name": "王芳"}
ITEMS = [{"med_list_codg": "XJ01CAA040E001010101445", "cnt": "2", "pric": 1280},   # 阿莫西林胶囊 (A)
         {"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]           # 门诊诊查费 (A)
# 10 x 氨氯地平片 at ¥26.40 + 门诊诊查费: 李四 has ¥50 of the ¥200 deductible behind him, so the fund pays.
ITEMS_FUND = [{"med_list_codg": "XC08CAA110A001010100653", "cnt": "10", "pric": 2640},
              {"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]
ITEMS_B = [{"med_list_codg": "XC10AAA126A001010100971", "cnt": "3", "pric": 2345}]  # 阿托伐他汀钙片 (B)
# The demo's clerk (edge operator add): every role, so the page can settle, cancel, pay out and close.
CLERK = {"operator": "0001", "name": "演示收费员", "password": "1234"}


@dataclass
class Stack:
    tmp: Path
    store: Any
    key: Any
    centre: Any
    centre_port: int
    daemon: Any               # edge.daemon.Running
    card: str                 # "virtual card (pcscd + vpcd)" | "simulated"


def pcsc_ready() -> bool:
    """pcscd answers and lists a vpcd reader."""
    try:
        from smartcard import scard
    except ImportError:
        return False
    try:
        rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rc != scard.SCARD_S_SUCCESS:
            return False
        try:
            rc, readers = scard.SCardListReaders(ctx, [])
            return rc == scard.SCARD_S_SUCCESS and any(r.startswith("Virtual PCD") for r in readers)
        finally:
            scard.SCardReleaseContext(ctx)
    except Exception:
        return False


def start_pcscd() -> None:
    """Start pcscd when we may (root, not running); quietly do nothing otherwise."""
    if os.geteuid() != 0 or shutil.which("pcscd") is None:
        return
    if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0:
        return
    os.makedirs("/run/pcscd", exist_ok=True)
    subprocess.run(["pcscd"], capture_output=True)


def take_reader_slot(slot: int = 0):
    """The flock test runs use for vpcd slot ``slot`` (tests/vcard_support.py: same file, same rule), so the
    demo's card never lands in a reader a test is using. Returns the open fd, or None when it is busy."""
    import fcntl

    lock_dir = Path(os.environ.get("VCARD_LOCK_DIR", tempfile.gettempdir()))
    fd = os.open(lock_dir / f"vcard-slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def virtual_card_process(card_file: Path = CARD_FILE, port: int = VPCD_PORT):
    """The virtual card as its own process connected to vpcd (that is "inserting" it)."""
    proc = subprocess.Popen([sys.executable, str(VCARD), "--card", str(card_file), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def start_stack(nursery, tmp: Path, *, port: int = 0, simulated: bool = True, probe_s: float = 1.0,
                      idle_s: float = 2.0) -> Stack:
    """Centre + published sample + enrolled counter daemon, all in ``nursery``."""
    from edge import config as cfgmod
    from edge import daemon
    from edge.enrol import enroll
    from sync.centre.keys import load_or_create
    from sync.centre.publish import publish
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    centre_dir, state_dir = tmp / "centre", tmp / "edge"
    centre_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(centre_dir / "centre.db")
    key = load_or_create(centre_dir)
    await trio.to_thread.run_sync(lambda: publish(store, key, SAMPLE))
    await trio.to_thread.run_sync(seed_ledger, store)
    centre = await start_centre(nursery, store, key, background=True)
    centre_port = int(centre.url.rsplit(":", 1)[1])
    token = store.create_enrol_token(SITE, ttl_ms=3_600_000)
    async with httpx.AsyncClient(trust_env=False) as client:
        await enroll(centre.url, token, state_dir, client=client)
    seed_prices(state_dir)
    seed_clerk(state_dir)
    cfg = cfgmod.from_dict({"state_dir": str(state_dir),
                            "counter": {"port": port, "online_timeout_s": 2.0, "retry_online_after_s": 5.0},
                            "card": {"simulated": simulated, "enabled": True},
                            "sync": {"idle_s": idle_s, "probe_interval_s": probe_s}})
    running = await nursery.start(daemon.run, cfg)
    return Stack(tmp, store, key, centre, centre_port, running,
                 "simulated" if simulated else "virtual card (pcscd + vpcd)")


def seed_clerk(state_dir: Path) -> None:
    """The demo's clerk (what ``edge operator add`` does), to log in at the counter page."""
    from edge.counter.operators import ROLES, OperatorStore

    store = OperatorStore.in_state_dir(state_dir)
    try:
        if store.get(CLERK["operator"]) is None:
            store.add(CLERK["operator"], CLERK["name"], ROLES, CLERK["password"])
    finally:
        store.close()


def seed_prices(state_dir: Path) -> None:
    """The site's own price list (what ``edge prices import`` does), so the page fills prices in."""
    from edge.counter.prices import PriceList, parse_csv

    with open(SAMPLE / "prices.csv", encoding="utf-8", newline="") as f:
        PriceList.in_state_dir(state_dir).replace(parse_csv(f))


def seed_ledger(store) -> None:
    """The centre's authoritative balances start from the same sample persons (online settlement and
    reconciliation read them)."""
    persons = json.loads((SAMPLE / "persons.json").read_text(encoding="utf-8"))["persons"]
    store.ledger.seed_from_persons(persons)


async def wait_for(predicate, *, step: float = 0.1):
    """Poll ``predicate`` until it returns something true (callers bound it with ``trio.fail_after``)."""
    while True:
        value = await predicate()
        if value:
            return value
        await trio.sleep(step)


async def stop_centre(stack: Stack) -> None:
    stack.centre.stop()
    await trio.sleep(0.2)


async def restart_centre(nursery, stack: Stack) -> None:
    from sync.centre.server import start_centre
    stack.centre = await start_centre(nursery, stack.store, stack.key, port=stack.centre_port, background=True)


# -- the scripted day ---------------------------------------------------------------------------
def _yuan(fen: int) -> str:
    from edge.settle import yuan
    return "¥" + yuan(fen)


def _say(text: str) -> None:
    print(text, flush=True)


async def scripted_day(nursery, stack: Stack, api: httpx.AsyncClient) -> dict:
    """A day at the counter; returns a summary (the test checks it)."""
    summary: dict = {"receipts": []}

    async def status():
        return (await api.get("/api/status")).json()

    async def card(who: dict | None):
        if stack.card == "simulated":
            if who is None:
                await api.delete("/api/card/simulate")
            else:
                r = await api.post("/api/card/simulate", json=who)
                r.raise_for_status()

    async def visit(label: str, body: dict, *, endpoint: str = "/api/settle") -> dict:
        r = await api.post(endpoint, json=body)
        data = r.json()
        if r.status_code != 200:
            _say(f"  {label}：{data['error']['zh']}")
            return data
        s = data["setlinfo"]
        extra = f" 理赔号 {data['claim_no']}" if data.get("claim_no") else ""
        _say(f"  {label}：{data['mode_zh']} 流水号 {data['seq']} 校验码 {data['digest']} 总额 {_yuan(s['medfee_sumamt'])} = "
             f"统筹 {_yuan(s['fund_pay_sumamt'])} + 账户 {_yuan(s['acct_pay'])} + 现金 {_yuan(s['psn_cash_pay'])}{extra}")
        summary["receipts"].append(data)
        return data

    _say("== 1. 上午：联网结算 ==")
    with trio.fail_after(30):  # the counter to reach the centre
        await wait_for(lambda: _online(api))
    with trio.fail_after(30):  # the first download of the sample bundles
        await wait_for(lambda: _bundles(api))
    with trio.fail_after(60):  # a completed sync round: the offline limits need the cache's age (bundles
        await wait_for(lambda: _fresh(api))   # apply in a low-priority child, slower on a busy machine)
    await card(ZHANGSAN)
    with trio.fail_after(30):  # the card
        await wait_for(lambda: _card_present(api))
    await visit("张三 门诊（账户支付，输入密码）", {"req": "DEMO-1", "med_type": "11", "acct_used_flag": True,
                                         "pin": "123456", "items": ITEMS})
    await visit("张三 再次提交同一笔（重复提交只记一笔）", {"req": "DEMO-1", "med_type": "11", "acct_used_flag": True,
                                                "pin": "123456", "items": ITEMS})
    await card(None)
    # A visit past the deductible: the newcomer sees the fund pay, and why (the engine's own reasons).
    await card(LISI)
    with trio.fail_after(30):  # the card
        await wait_for(lambda: _card_present(api))
    fund_visit = {"req": "DEMO-1F", "med_type": "11", "acct_used_flag": False, "items": ITEMS_FUND}
    quote = (await api.post("/api/presettle", json={k: v for k, v in fund_visit.items() if k != "req"})).json()
    for r in quote.get("reasons", []):
        if "起付线" in r.get("zh", "") or "统筹" in r.get("zh", ""):
            _say(f"    {r['zh']}")
    await visit("李四 门诊（超过起付线，统筹基金支付）", fund_visit)
    await card(None)

    _say("== 2. 中午：医保中心断网 ==")
    await stop_centre(stack)
    with trio.fail_after(30):  # the counter to notice the outage
        await wait_for(lambda: _offline(api))
    s = await status()
    _say("  柜台已转为脱机模式（页面显示脱机横幅）" if not s["online"] else "  柜台仍显示联网")
    await card(ZHANGSAN)
    with trio.fail_after(30):  # the card
        await wait_for(lambda: _card_present(api))
    await visit("张三 脱机门诊", {"req": "DEMO-2", "med_type": "11", "acct_used_flag": True, "pin": "123456",
                               "items": ITEMS_B})
    await card(None)
    if stack.card == "simulated":
        await card(WANGFANG)
        body = {"req": "DEMO-3", "med_type": "11", "items": ITEMS}
        r = await visit("王芳（参保暂停）结算", body)
        if r.get("error", {}).get("code") == "full_payment_required":
            await visit("王芳 全额垫付", body, endpoint="/api/claim")
        await card(None)
    await visit("手工录入卡（卡片损坏）脱机", {"req": "DEMO-4", "med_type": "11", "items": ITEMS,
                                      "keyed_in": {"card_no": "A12345678", "certno": LISI["certno"]}},
                endpoint="/api/claim")
    s = await status()
    summary["backlog_during_outage"] = s["backlog"]["count"]
    _say(f"  待上传医保中心：{s['backlog']['count']} 笔")

    _say("== 3. 下午：恢复联网 ==")
    await restart_centre(nursery, stack)
    with trio.fail_after(60):  # the counter to reach the centre again
        await wait_for(lambda: _online(api))
    with trio.fail_after(60):  # the backlog to be sent
        await wait_for(lambda: _backlog_empty(api))
    s = await status()
    summary["backlog_after"] = s["backlog"]["count"]
    _say(f"  待上传：{s['backlog']['count']} 笔" if s["backlog"]["count"] else "  脱机期间的记录已全部上传")

    _say("== 4. 医保中心收到的数据 ==")
    device = s["device"]
    summary["device"] = device
    summary["centre_high_water"] = await trio.to_thread.run_sync(stack.store.high_water, device)
    summary["journaled"] = (await status())["journal"]["head"]
    _say(f"  设备 {device}：医保中心已收到第 1 至 {summary['centre_high_water']} 条记录")
    try:
        from sync.centre import reconcile, report
        await trio.to_thread.run_sync(reconcile.run_pending, stack.store)
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
        rep = await trio.to_thread.run_sync(lambda: report.daily(stack.store, SITE, today))
        _say(report.to_text(rep))
        summary["report"] = True
    except Exception as exc:  # the report is the reconciliation engineer's: show what we can
        _say(f"  （日对账报表暂不可用：{exc.__class__.__name__}）")
    return summary


REVIEWER = ("reviewer", "review-demo")      # the interactive demo's reviewer login (printed at start)


async def _centre_keys(nursery, stack: Stack) -> None:
    """c/r + Enter on the terminal cut and restore the centre (the counter's offline banner, then the sync)."""
    if not sys.stdin.isatty():
        return
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    up = True
    async with stdin:
        async for chunk in stdin:
            for key in chunk.decode(errors="replace").split():
                if key == "c" and up:
                    await stop_centre(stack)
                    up = False
                    _say("centre cut: the counter goes offline within seconds (脱机模式)")
                elif key == "r" and not up:
                    await restart_centre(nursery, stack)
                    up = True
                    _say("centre restored: the backlog is sent")


async def _online(api):
    return (await api.get("/api/status")).json()["online"]


async def _offline(api):
    return not (await api.get("/api/status")).json()["online"]


async def _bundles(api):
    return {"policy", "catalogue", "persons", "hotlist"} <= set((await api.get("/api/status")).json()["cache"]["bundles"])


async def _fresh(api):
    return (await api.get("/api/status")).json()["cache"]["age_s"] is not None


async def _card_present(api):
    return (await api.get("/api/card")).json()["present"]


async def _backlog_empty(api):
    return (await api.get("/api/status")).json()["backlog"]["count"] == 0


# -- entry point ----------------------------------------------------------------------------------
def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _main(scripted: bool, port: int, keep: bool, tmp: Path, use_card: bool) -> int:
    from edge import logs

    logs.setup("WARNING", json_lines=True)
    if not scripted and not _port_free(port):
        _say(f"demo: port {port} is in use; the counter takes any free port instead")
        port = 0
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp, port=0 if scripted else port, simulated=not use_card)
        url = stack.daemon.url
        if scripted:
            _say(f"演示：医保中心 {stack.centre.url}，柜台 {url}（模拟读卡，无需浏览器）")
        else:
            _say(f"centre:  {stack.centre.url}  (SQLite in {tmp / 'centre'})")
            _say(f"counter: {url}/   <- open this page in a browser")
            _say(f"  login 工号 {CLERK['operator']}  密码 {CLERK['password']}  ({CLERK['name']}; more clerks: "
                 f"edge operator add ID --name 姓名 --roles settle,cancel --state-dir {tmp / 'edge'})")
            _say(f"  HIS/POS: send Authorization: Bearer <the token in {tmp / 'edge' / 'api.token'}>")
        if scripted:
            pass
        elif use_card:
            _say("card:    virtual card 张三 (PIN 123456) in reader 'Virtual PCD 00 00' via pcscd + vpcd")
        else:
            _say("card:    模拟读卡 SIMULATED (no virtual card in a reader); use the page's 模拟插卡 button "
                 "(sample card 330300D15600000500A1B2C3D4E5F607, 社会保障号码 330302199001011235, PIN 123456)")
        # The installation token, as a HIS would present it (api.token in the state directory).
        async with httpx.AsyncClient(base_url=url, trust_env=False, headers=stack.daemon.headers) as api:
            if scripted:
                with trio.fail_after(240):
                    summary = await scripted_day(nursery, stack, api)
                ok = summary.get("backlog_after") == 0
                _say("演示结束：" + ("全部记录已到达医保中心" if ok else "仍有记录未上传"))
                _say("SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "receipts"}, ensure_ascii=False))
                nursery.cancel_scope.cancel()
                return 0 if ok else 1
            await trio.to_thread.run_sync(lambda: stack.store.accounts.add(
                REVIEWER[0], REVIEWER[1], "reviewer", now=int(dt.datetime.now().timestamp() * 1000)))
            _say(f"审核台 review desk: {stack.centre.url}/review   用户名 {REVIEWER[0]}  密码 {REVIEWER[1]}")
            _say(f"  (another reviewer: centre reviewer add NAME --db {stack.tmp / 'centre' / 'centre.db'})")
            _say("keys: c + Enter = cut the centre (the page shows 脱机模式), r + Enter = restore it, Ctrl-C = stop")
            import signal
            async with trio.open_nursery() as keys:
                keys.start_soon(_centre_keys, nursery, stack)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                keys.cancel_scope.cancel()
            _say("demo: stopping")
            nursery.cancel_scope.cancel()
    return 0


def main(*, scripted: bool = False, port: int = 8765, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="counter-demo-"))
    start_pcscd()
    use_card = False
    card_cm: contextlib.AbstractContextManager = contextlib.nullcontext()
    slot_fd = None
    if pcsc_ready() and not scripted:
        slot_fd = take_reader_slot(0)
        if slot_fd is None:
            print("demo: the first virtual reader is in use by a test run: using the SIMULATED card desk (模拟读卡)",
                  flush=True)
        else:
            card_cm = virtual_card_process()
            use_card = True
    elif not scripted:
        print("demo: pcscd + vsmartcard vpcd are not available here: using the SIMULATED card desk (模拟读卡)",
              flush=True)
    try:
        with card_cm:
            return trio.run(_main, scripted, port, keep, tmp, use_card)
    except KeyboardInterrupt:
        return 0
    finally:
        if slot_fd is not None:
            os.close(slot_fd)           # releases the reader's flock
        if keep:
            print(f"demo: kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def cli(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.demo",
                                description="start a local centre and a counter with sample data (scripts/demo)")
    p.add_argument("--scripted", action="store_true",
                   help="run a scripted day (online, outage, claim, reconnection) and exit")
    p.add_argument("--port", type=int, default=8765, help="counter port on 127.0.0.1 (default 8765; 0 = any free port)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = p.parse_args(argv)
    return main(scripted=args.scripted, port=args.port, keep=args.keep)


if __name__ == "__main__":
    sys.exit(cli())
