"""Check of the running agent: is the daemon up and does its local API answer?

Diagnose must work with the daemon down (that is often why the technician came), so this is one
bounded HTTP request to 127.0.0.1 and nothing else depends on the daemon. The request carries the
installation token read from ``api.token`` in the state directory (diagnose runs as the counter's
user, who can read it); without it the API answers 401, reported as such.
"""

from __future__ import annotations

import trio

from ._context import Context, in_thread
from ._finding import Finding, fail, ok

DAEMON_S = 2.0     # the local API answers in milliseconds when it is up; 2 s means it is wedged
DEFAULT_PORT = 8765
STATUS_PATH = "/api/status"


def daemon_url(ctx: Context) -> str:
    """--daemon, else host and port from edge.toml (edge.config), else the documented default."""
    if ctx.daemon_url:
        return ctx.daemon_url.rstrip("/")
    from edge.config import ConfigError, load

    path = ctx.config_path
    try:
        counter = load(path if path.exists() else None).counter
        host, port = counter.host, counter.port
    except ConfigError:  # the config check reports the damaged file; probe the default meanwhile
        host, port = "127.0.0.1", DEFAULT_PORT
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def daemon_status(ctx: Context) -> dict | Exception | None:
    """The daemon's status document, the error that stopped us reading it, or None on timeout."""
    import httpx

    async def make():
        url = daemon_url(ctx) + STATUS_PATH
        from edge.counter.auth import read_token

        token = await in_thread(read_token, ctx.state_dir)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # The client is closed outside the bound (see edge.diagnose._centre.check_signed_request).
        async with httpx.AsyncClient(timeout=None, trust_env=False) as client:
            with trio.move_on_after(DAEMON_S):
                try:
                    resp = await client.get(url, headers=headers)
                    resp.raise_for_status()
                    body = resp.json()
                    return body if isinstance(body, dict) else ValueError("status is not a JSON object")
                except (httpx.HTTPError, ValueError) as exc:
                    return exc
        return None
    return await ctx.once("daemon_status", make)


async def check_daemon(ctx: Context) -> Finding:
    url = daemon_url(ctx)
    status = await daemon_status(ctx)
    start = ("Start the agent: `systemctl start counter-edge` (Windows: `nssm start counter-edge`), then run "
             "diagnose again; `journalctl -u counter-edge` shows why it stopped.",
             "启动程序：`systemctl start counter-edge`（Windows：`nssm start counter-edge`），然后重新诊断；"
             "`journalctl -u counter-edge` 可查看停止原因。")
    if status is None:
        return fail("daemon", f"the agent's API at {url} did not answer within {DAEMON_S:g} s (hung?)",
                    f"程序接口 {url} 在 {DAEMON_S:g} 秒内无响应（可能卡住）",
                    "Restart the agent: `systemctl restart counter-edge`, then run diagnose again.",
                    "重启程序：`systemctl restart counter-edge`，然后重新诊断。", url=url, bound_s=DAEMON_S)
    if isinstance(status, Exception):
        return fail("daemon", f"the agent is not running (its API at {url} does not answer: "
                    f"{status.__class__.__name__})", f"程序未运行（{url} 无响应）", *start, url=url,
                    error=str(status) or status.__class__.__name__)
    keep = {k: status[k] for k in ("device", "online", "last_contact_ms", "level", "simulated_card") if k in status}
    journal = status.get("journal")
    if not isinstance(journal, dict):
        journal = {}
    if journal.get("ok") is False:
        err = journal.get("error")
        message = err.get("message") if isinstance(err, dict) else str(err)
        return fail("daemon", f"the agent is running but has stopped settling: the journal cannot be written "
                    f"({message})", "程序在运行，但结算日志无法写入，已停止结算",
                    "Read the journal and disk findings: free disk space or fix permissions, then restart the agent "
                    "(`systemctl restart counter-edge`). Never delete journal.db.",
                    "查看上面日志和磁盘的检查结果：清理磁盘或修正权限后重启程序。切勿删除 journal.db。", url=url,
                    journal_error=err, **keep)
    return ok("daemon", f"the agent is running and its API answers at {url}", f"程序正在运行，接口 {url} 正常",
              url=url, **keep)


async def check_config(ctx: Context) -> Finding:
    """edge.toml parses and every key is known (edge.config refuses typos; the daemon would not start)."""
    from edge.config import ConfigError, load

    path = ctx.config_path
    if not path.exists():
        return ok("config", f"no {path.name}: the agent runs with the documented defaults",
                  f"没有 {path.name}：程序使用默认设置", path=str(path))
    try:
        cfg = await in_thread(load, path)
    except ConfigError as exc:
        return fail("config", f"{path.name} is refused: {exc}", f"配置文件 {path.name} 有误，程序无法启动",
                    f"Correct {path} as the message says (docs/counter.md lists every key), or move it aside to "
                    "run with the defaults; then restart the agent.",
                    f"按提示修改 {path}（所有配置项见 docs/counter.md），或将其移走以使用默认设置，然后重启程序。",
                    path=str(path), error=str(exc))
    return ok("config", f"{path.name} is valid (API on {cfg.counter.host}:{cfg.counter.port})",
              f"配置文件 {path.name} 正确（接口 {cfg.counter.host}:{cfg.counter.port}）", path=str(path),
              host=cfg.counter.host, port=cfg.counter.port)
