"""Sync frames over HTTP: POST one frame to the centre and read its answer (httpx, trio).

Shared by enrolment (:mod:`edge.enrol`, before the device has an identity) and the uplink
(:mod:`edge.uplink`, signed requests); it sits below both so neither imports the other for it.
httpx exceptions never escape: they become :class:`sync.errors.TransportError`, and a typed error
frame from the centre becomes the error it names (:func:`sync.protocol.error_from_message`).

TLS: every client to the centre is made by :func:`centre_client` from the state directory. When the
state directory holds ``centre-ca.pem`` (copied there by ``edge enroll --ca FILE``), the centre's
certificate must chain to that CA and to nothing else (a city CA is private; the system's public CAs
would let anyone with a public certificate for the name in); without it, the system's CAs. The file
lives beside ``device.json`` so the daemon, ``edge sync`` and diagnose all trust the same CA without
a setting each. A certificate that does not verify is ``centre_cert_untrusted``: nothing is sent,
entries stay queued.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from sync import protocol, wire
from sync.errors import SyncError, TransportError


async def post_frame(url: str, message: Any, *, client: httpx.AsyncClient | None = None,
                     headers: dict | None = None, body: bytes | None = None, wait_s: float = 30.0) -> Any:
    """POST a sync frame and return the decoded answer; typed errors for every failure.

    ``wait_s`` is handed to httpx as its own network timeout: httpx then ends a stuck request
    cleanly (a trio cancellation in the middle of httpx's body stream leaves an async generator
    unfinished). Callers still bound the whole call with ``fail_after``."""
    body = wire.encode(message) if body is None else body
    own = client is None
    http = httpx.AsyncClient() if client is None else client
    try:
        try:
            request = http.build_request(
                "POST", url, timeout=httpx.Timeout(wait_s),
                headers={"content-type": wire.CONTENT_TYPE, "content-length": str(len(body)), **(headers or {})})
            request.stream = _OneChunk(body)
            resp = await http.send(request)
        except httpx.HTTPError as exc:
            raise transport_error(url, exc) from exc
        return answer_of(url, resp.status_code, resp.headers.get("content-type", ""), resp.content)
    finally:
        if own:
            await http.aclose()


CA_FILE = "centre-ca.pem"

UNTRUSTED_ZH = ("医保中心的证书未通过验证，已停止连接（可能连到了假冒的中心，或中心更换了证书）；"
                "未上传的记录仍保存在本机，请联系技术支持核对中心证书（状态目录中的 centre-ca.pem）")
NEEDS_HTTPS_ZH = "医保中心未应答就断开了连接：中心使用加密连接时，请改用 https:// 开头的地址"
TLS_FAILED_ZH = "无法与医保中心建立加密连接；未上传的记录仍保存在本机，请检查中心地址和电脑时间后重试"


def tls_context(state_dir: str | os.PathLike) -> ssl.SSLContext:
    """The TLS settings for the centre: its pinned CA (``centre-ca.pem``) when the state directory has
    one, else the system's CAs. A damaged CA file raises :class:`TransportError` ``bad_ca_file``."""
    path = Path(state_dir) / CA_FILE
    # lexists: a link to a missing file is a damaged pin, not "no pin" (which would trust every public
    # CA for the centre's name). Found by attacking.
    if not os.path.lexists(path):
        return ssl.create_default_context()
    return load_ca(path)


def load_ca(path: str | os.PathLike) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TransportError(f"the CA file {path} cannot be used ({exc}): it must hold the PEM certificate of the "
                             "CA that issued the centre's certificate", code="bad_ca_file", retryable=False,
                             zh=f"中心证书的根证书文件 {path} 无法使用，请向医保中心索取正确的 PEM 证书文件",
                             file=str(path)) from exc


def centre_client(state_dir: str | os.PathLike, **options: Any) -> httpx.AsyncClient:
    """An httpx client for the centre that verifies its certificate against :func:`tls_context`.
    Proxies from the environment are ignored, as the daemon always did (a counter PC's proxy setting
    is for its browser, not for signed settlement traffic)."""
    return httpx.AsyncClient(verify=tls_context(state_dir), trust_env=False, **options)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def transport_error(url: str, exc: httpx.HTTPError) -> TransportError:
    """The typed error for a failed request to the centre: an untrusted certificate and plain HTTP to
    a TLS port get their own codes (a technician must act); everything else is a transient outage."""
    cause = _tls_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TransportError(f"the centre at {url} showed a certificate that does not verify against the pinned CA "
                              f"({cause.verify_message}): refused, nothing was sent; entries stay queued. Check "
                              f"{CA_FILE} in the state directory and the centre's certificate",
                              code="centre_cert_untrusted", zh=UNTRUSTED_ZH, retryable=False, url=url)
    if cause is not None:
        return TransportError(f"TLS with the centre at {url} failed ({cause.reason or cause}); entries stay queued",
                              code="centre_tls_failed", zh=TLS_FAILED_ZH, url=url)
    if url.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
        # A TLS listener hangs up on plain HTTP without a word: the likeliest reason by far.
        return TransportError(f"the centre at {url} closed the connection without answering: a centre served "
                              "over TLS does this to plain HTTP; use its https:// address", code="centre_needs_https",
                              zh=NEEDS_HTTPS_ZH, url=url)
    return TransportError(f"cannot reach the centre at {url}: {exc.__class__.__name__} {exc}; "
                          "entries stay queued and are sent when it answers")


class _OneChunk(httpx.AsyncByteStream):
    """The request body as a plain async iterator. httpx's own ByteStream is an async generator, which
    trio reports (ResourceWarning) whenever a failed connection leaves it unfinished."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __aiter__(self):
        return _OneChunkIter(self.body)


class _OneChunkIter:
    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body

    async def __anext__(self) -> bytes:
        if self.body is None:
            raise StopAsyncIteration
        body, self.body = self.body, None
        return body


def answer_of(url: str, status: int, ctype: str, content: bytes) -> Any:
    if wire.CONTENT_TYPE not in ctype:
        # a proxy's or gateway's page, not the centre: transient
        raise TransportError(f"the centre at {url} answered HTTP {status} without a sync frame; retrying later")
    try:
        msg = wire.decode(content)
    except SyncError as exc:
        raise TransportError(f"the answer from {url} was damaged in transit ({exc.message}); retrying") from exc
    if status != 200:
        if isinstance(msg, dict) and msg.get("t") == "error":
            raise protocol.error_from_message(msg, status)
        raise TransportError(f"the centre at {url} answered HTTP {status}")
    return msg
