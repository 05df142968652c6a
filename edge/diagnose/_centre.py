"""Checks of the way to the centre: DNS, TCP, TLS, a signed request, and the clock against it.

Every network step is bounded here (``move_on_after``), so a centre that does not answer costs at
most the bound and never hangs the technician's run; the runner adds an outer bound as a safety net.
Each layer is its own check, so the finding names the first layer that broke: a DNS failure means
"check the network settings", a TCP failure "check the line or firewall", a TLS failure "check the
clock or a proxy", a refused signed request "the centre does not know this device".
"""

from __future__ import annotations

import email.utils
import ipaddress
import ssl
from urllib.parse import urlsplit

import trio

from sync.errors import SyncError

from ._context import Context, in_thread
from ._finding import Finding, fail, ok, warn

DNS_S = 3.0          # a resolver that has not answered in 3 s is as good as absent at the counter
TCP_S = 3.0
TLS_S = 4.0
HTTP_S = 5.0
# sync.auth refuses requests signed more than 5 minutes off the centre's clock; offline settlement
# distrusts a clock that moved more than 2 minutes (edge.offline.CLOCK_SKEW_MS). Warn early.
SKEW_WARN_MS = 60_000

NO_CENTRE = ("no centre URL: the device is not enrolled and no --centre was given",
             "没有中心地址：本机未注册，也未指定 --centre")
ENROL_FIRST = ("Enrol the device (`edge enroll URL TOKEN`) or pass --centre URL.",
               "先注册（`edge enroll URL TOKEN`），或用 --centre 指定中心地址。")
NETWORK_STEP = ("Check the network cable / Wi-Fi / 4G router and that other websites open; counters keep "
                "settling offline meanwhile. If only the centre fails, call the centre's help desk.",
                "检查网线、无线或 4G 路由器，确认其他网站能打开；断网期间仍可脱机结算。"
                "只有医保中心连不上时请联系中心技术支持。")


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the centre URL {url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port, parts.scheme


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _url_or_finding(ctx: Context, check: str) -> tuple[str, int, str, str] | Finding:
    url = await ctx.centre()
    if url is None:
        return fail(check, *NO_CENTRE, *ENROL_FIRST)
    try:
        return (*_target(url), url)
    except ValueError as exc:
        return fail(check, str(exc), f"中心地址 {url} 无效", "Correct centre_url in device.json or --centre.",
                    "请更正 device.json 中的 centre_url 或 --centre 参数。", url=url)


async def _resolve(host: str, port: int) -> list[str]:
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    # sockaddr[0] is the address text for AF_INET and AF_INET6, the only families a host name resolves to here.
    return sorted({str(info[4][0]) for info in infos})


async def check_dns(ctx: Context) -> Finding:
    t = await _url_or_finding(ctx, "centre_dns")
    if isinstance(t, Finding):
        return t
    host, port, _, url = t
    with trio.move_on_after(DNS_S):
        try:
            addrs = await _resolve(host, port)
        except OSError as exc:
            return fail("centre_dns", f"the centre's name {host} cannot be resolved ({exc})",
                        f"无法解析中心域名 {host}", "Check the PC's DNS settings (or the router's), then run "
                        "diagnose again. " + NETWORK_STEP[0], "检查电脑或路由器的 DNS 设置。" + NETWORK_STEP[1],
                        host=host, error=str(exc))
        return ok("centre_dns", f"{host} resolves to {', '.join(addrs)}", f"{host} 解析为 {', '.join(addrs)}",
                  host=host, addresses=addrs)
    return fail("centre_dns", f"no DNS answer for {host} within {DNS_S:g} s", f"{DNS_S:g} 秒内未解析出 {host}",
                "Check the PC's DNS settings (or the router's). " + NETWORK_STEP[0],
                "检查电脑或路由器的 DNS 设置。" + NETWORK_STEP[1], host=host, bound_s=DNS_S)


async def _tcp(host: str, port: int):
    return await trio.open_tcp_stream(host, port)


async def check_tcp(ctx: Context) -> Finding:
    t = await _url_or_finding(ctx, "centre_tcp")
    if isinstance(t, Finding):
        return t
    host, port, _, url = t
    with trio.move_on_after(TCP_S):
        try:
            stream = await _tcp(host, port)
        except OSError as exc:
            return fail("centre_tcp", f"cannot connect to the centre at {host}:{port} ({exc.strerror or exc})",
                        f"无法连接中心 {host}:{port}", *NETWORK_STEP, host=host, port=port, error=str(exc))
        await stream.aclose()
        return ok("centre_tcp", f"TCP connection to {host}:{port} works", f"可以连接中心 {host}:{port}",
                  host=host, port=port)
    return fail("centre_tcp", f"the centre at {host}:{port} did not accept a connection within {TCP_S:g} s",
                f"{TCP_S:g} 秒内无法连接中心 {host}:{port}", *NETWORK_STEP, host=host, port=port, bound_s=TCP_S)


async def check_tls(ctx: Context) -> Finding:
    from edge.transport import CA_FILE, tls_context

    t = await _url_or_finding(ctx, "centre_tls")
    if isinstance(t, Finding):
        return t
    host, port, scheme, url = t
    if scheme != "https":
        if _is_loopback(host):
            return ok("centre_tls", f"plain HTTP to a centre on this PC ({url}): no TLS needed",
                      f"中心在本机（{url}），无需 TLS", url=url)
        return warn("centre_tls", f"the centre URL {url} uses plain HTTP: requests are signed but not private",
                    f"中心地址 {url} 使用明文 HTTP：请求已签名但未加密",
                    "Ask the centre for its https:// address and re-enter it in device.json.",
                    "向医保中心索取 https:// 地址并更新 device.json。", url=url)
    with trio.move_on_after(TLS_S):
        try:
            tcp = await _tcp(host, port)
        except OSError as exc:
            return fail("centre_tls", f"cannot test TLS: no connection to {host}:{port}",
                        f"无法测试 TLS：连不上 {host}:{port}", *NETWORK_STEP, host=host, error=str(exc))
        try:
            context = tls_context(ctx.state_dir)
        except SyncError as exc:
            await tcp.aclose()
            return fail("centre_tls", exc.message, exc.zh, f"Put the centre's CA certificate (PEM) at {ctx.path(CA_FILE)}.",
                        f"请把医保中心的根证书（PEM）放到 {ctx.path(CA_FILE)}。", code=exc.code)
        stream = trio.SSLStream(tcp, context, server_hostname=host)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            cause = exc.__cause__ or exc
            if isinstance(cause, ssl.SSLCertVerificationError) and ctx.path(CA_FILE).exists():
                return fail("centre_tls", f"the centre's certificate does not chain to the pinned CA "
                            f"{ctx.path(CA_FILE)} ({cause.verify_message})", "中心证书未通过验证（与本机保存的根证书不符）",
                            "Do not replace the CA file on your own: a certificate that does not verify may be an "
                            f"impostor. Ask the centre's help desk whether its certificate or CA changed; if so, put "
                            f"the new CA certificate at {ctx.path(CA_FILE)} and restart the agent.",
                            f"不要自行更换根证书：证书不符可能是连到了假冒的中心。请向医保中心技术支持核实证书是否更换；"
                            f"如已更换，把新的根证书放到 {ctx.path(CA_FILE)} 后重启程序。",
                            host=host, error=str(cause), ca_file=str(ctx.path(CA_FILE)))
            return fail("centre_tls", f"TLS handshake with {host} failed: {cause}",
                        f"与 {host} 的 TLS 握手失败",
                        "Check the PC's date and time (a wrong clock breaks certificates) and that no proxy or "
                        "captive portal intercepts the connection; then run diagnose again.",
                        "检查电脑日期时间（时间错误会导致证书失效），并确认没有代理或上网认证页面拦截连接。",
                        host=host, error=str(cause))
        finally:
            await trio.aclose_forcefully(stream)
        pinned = ctx.path(CA_FILE).exists()
        return ok("centre_tls", f"TLS to {host} works (certificate trusted{' by the pinned CA' if pinned else ''})",
                  f"与 {host} 的 TLS 正常（证书可信）", host=host, pinned_ca=pinned)
    return fail("centre_tls", f"TLS handshake with {host}:{port} did not finish within {TLS_S:g} s",
                f"{TLS_S:g} 秒内未完成与 {host}:{port} 的 TLS 握手", *NETWORK_STEP, host=host, bound_s=TLS_S)


async def check_signed_request(ctx: Context) -> Finding:
    """A signed, read-only request (a feed page past the end): proves the centre knows this device
    and its key, and returns the centre's high-water mark for this device's journal."""
    import httpx

    from edge.enrol import KEY_FILE
    from edge.journal import JournalError, load_device_key
    from edge.transport import centre_client
    from edge.uplink import CentreClient
    from sync import protocol

    try:
        cfg = await ctx.device()
        key = await in_thread(load_device_key, ctx.path(KEY_FILE))
    except (SyncError, JournalError) as exc:
        return fail("centre_signed", f"cannot sign a request: {exc.message}", "无法签名请求（未注册或密钥不可用）",
                    "Fix the enrolment / device key findings first.", "请先解决注册或设备密钥的问题。", code=exc.code)
    url = await ctx.centre()
    if url is None:
        return fail("centre_signed", *NO_CENTRE, *ENROL_FIRST)
    # httpx's own timeout (just under our bound) ends a stuck request cleanly; a trio cancellation in
    # the middle of httpx's TLS handshake would leave the socket to the garbage collector. Our bound
    # stays as the guarantee, and sits inside the client block so closing the client is not cancelled.
    page = None
    try:
        http = centre_client(ctx.state_dir, timeout=httpx.Timeout(HTTP_S - 1))
    except SyncError as exc:
        return fail("centre_signed", exc.message, exc.zh, "See the centre_tls finding.", "见“中心：加密连接”一项。",
                    code=exc.code)
    async with http as client:
        with trio.move_on_after(HTTP_S):
            centre = CentreClient(url, cfg.device, key, client=client, clock=ctx.clock_ms, wait_s=HTTP_S - 1)
            try:
                page = protocol.FeedPage.from_msg(
                    await centre.call("/v1/feed", protocol.FeedRequest(cursor=2**53, limit=1).to_msg()))
            except SyncError as exc:
                if exc.code in ("stale_request",):
                    step = ("The PC's clock is too far from the centre's: set the date and time (see the clock "
                            "check), then run diagnose again.", "电脑时间与中心相差太大：请先校准日期时间后重新诊断。")
                elif exc.code in ("centre_cert_untrusted", "centre_tls_failed", "centre_needs_https"):
                    step = ("See the centre_tls finding: the centre's certificate or address is wrong, not the device.",
                            "见“中心：加密连接”一项：问题在中心证书或地址，不在本设备。")
                elif exc.code in ("transport", "transport_error") or getattr(exc, "retryable", False):
                    step = NETWORK_STEP
                else:
                    step = ("The centre refused this device: call the centre's help desk with the device id "
                            f"{cfg.device} and this message.",
                            f"医保中心拒绝了本设备：请带上设备号 {cfg.device} 和此信息联系中心技术支持。")
                return fail("centre_signed", f"the signed request to {url} failed: {exc.message}",
                            f"向中心发送的签名请求失败（{exc.code}）", *step, code=exc.code, url=url)
    if page is None:
        return fail("centre_signed", f"the centre at {url} did not answer a signed request within {HTTP_S:g} s",
                    f"{HTTP_S:g} 秒内中心未响应签名请求", *NETWORK_STEP, url=url, bound_s=HTTP_S)
    return ok("centre_signed", f"the centre accepts this device's signed requests (it holds entries up to "
              f"seq {page.high_water})", f"中心接受本设备的签名请求（已收到第 {page.high_water} 条及以前的日志）",
              url=url, high_water=page.high_water)


async def check_clock(ctx: Context) -> Finding:
    """Local wall clock against the centre's HTTP Date header (1 s resolution: enough for minutes)."""
    import httpx

    from edge.transport import centre_client

    url = await ctx.centre()
    if url is None:
        return warn("clock", "cannot compare the clock: " + NO_CENTRE[0], "无法比对时间：" + NO_CENTRE[1],
                    *ENROL_FIRST)
    answer, local = None, 0
    try:
        http = centre_client(ctx.state_dir, timeout=httpx.Timeout(HTTP_S - 1))
    except SyncError as exc:
        return warn("clock", f"cannot compare the clock: {exc.message}", "无法比对时间：" + exc.zh,
                    "See the centre_tls finding.", "见“中心：加密连接”一项。", code=exc.code)
    async with http as client:
        with trio.move_on_after(HTTP_S):
            try:
                answer = await client.get(url + "/health")
                local = ctx.clock_ms()   # as close to the centre's Date as we can get
            except httpx.HTTPError as exc:
                return warn("clock", f"cannot compare the clock: the centre did not answer ({exc.__class__.__name__})",
                            "无法比对时间：中心无响应", "Fix the centre reachability findings, then run diagnose "
                            "again. Meanwhile compare the PC's clock with a phone.",
                            "先解决与中心的连接问题后重新诊断；也可先用手机时间核对电脑时间。", url=url)
    if answer is None:
        return warn("clock", f"cannot compare the clock: no answer from {url} within {HTTP_S:g} s",
                    f"无法比对时间：{HTTP_S:g} 秒内中心无响应", "Fix the centre reachability findings first; meanwhile "
                    "compare the PC's clock with a phone.", "先解决与中心的连接问题；也可先用手机时间核对电脑时间。",
                    url=url, bound_s=HTTP_S)
    date = answer.headers.get("date")
    if not date:
        return warn("clock", "cannot compare the clock: the centre's answer has no Date header",
                    "无法比对时间：中心响应中没有时间", "Compare the PC's clock with a phone and correct it if needed.",
                    "请用手机时间核对电脑时间，必要时校准。", url=url)
    centre_ms = int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
    skew = local - centre_ms
    data = {"skew_ms": skew, "centre_date": date, "url": url}
    minutes = abs(skew) / 60_000
    direction = "ahead of" if skew > 0 else "behind"
    zh_dir = "快" if skew > 0 else "慢"
    from sync.auth import MAX_SKEW_MS

    fix = ("Set the PC's date, time and time zone (Asia/Shanghai) correctly, and turn on automatic time "
           "sync (NTP); then run diagnose again.",
           "请校准电脑的日期、时间和时区（北京时间），并开启自动对时（NTP），然后重新诊断。")
    if abs(skew) >= MAX_SKEW_MS:
        return fail("clock", f"the PC's clock is {minutes:.1f} minutes {direction} the centre's: the centre refuses "
                    "its requests and offline settlement cannot trust the cache age",
                    f"电脑时间比中心{zh_dir} {minutes:.1f} 分钟：中心会拒绝请求，脱机结算无法判断缓存时效", *fix, **data)
    if abs(skew) >= SKEW_WARN_MS:
        return warn("clock", f"the PC's clock is {minutes:.1f} minutes {direction} the centre's",
                    f"电脑时间比中心{zh_dir} {minutes:.1f} 分钟", *fix, **data)
    return ok("clock", f"clock within {abs(skew) / 1000:.0f} s of the centre's", f"与中心时间相差 {abs(skew) / 1000:.0f} 秒",
              **data)
