"""The support bundle: what a technician sends to the help desk, with patients' data redacted.

A tar.gz holding::

    README.txt                  what is inside and what is not
    diagnose.json               the full diagnose report (edge.diagnose.run)
    versions.json               agent, Python, SQLite, pyscard, pcsc-lite, OS; cached bundle versions
    config/device.json          device id, site, centre URL, pinned centre public key (no private key)
    config/edge.json            edge.toml with secrets removed (rendered as JSON)
    journal/stats.json          counts by kind, head, acknowledged seq, backlog, quarantine, file sizes
    journal/unacknowledged.json the entries the centre has not acknowledged, as a redacted rendering
    logs/…                      the tail of each log file (and `journalctl -u counter-edge` when present)

Everything goes through one :class:`edge.redact.Redactor`, which first learns every personal value
found in structured data (journal bodies, config) and then scrubs those values and every PII shape
from all text, logs included. The device key is never read.

Journal entries are signed: redacting inside them would break their signatures, so the bundle holds a
*rendering* (seq, kind, time, digest, hash, amounts, masked ids) and says so; the signed originals stay
on the device (``edge journal export`` writes them for an auditor). See docs/operations.md.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from edge.redact import Redactor

from ._context import DEVICE_FILE, JOURNAL_FILE, Context
from ._runner import run

LOG_TAIL_BYTES = 2 * 1024 * 1024     # per log file: the recent part is what explains today's fault
UNACKED_LIMIT = 50_000               # rendering cap; the rest is counted (the help desk asks for an export)
JOURNALCTL_S = 5.0
UNIT = "counter-edge"

NOTE = ("These are redacted renderings of the unacknowledged journal entries, not the entries themselves: "
        "the entries are signed, and removing personal data from them would break their signatures. The "
        "signed originals stay on the device; `edge journal export FILE` writes them for an auditor, and the "
        "agent uploads them to the centre when it can.")
NOTE_ZH = "以下为未确认日志的脱敏摘要，并非原始日志：原始日志带签名，删改个人信息会使签名失效。签名原件保存在本机，" \
          "可用 `edge journal export FILE` 导出，网络恢复后程序会自动上传中心。"


@dataclass(frozen=True)
class BundleSummary:
    path: Path
    files: tuple[str, ...]
    unacknowledged: int
    diagnose_status: str
    bytes: int


def _log_files(state_dir: Path, extra: list[Path]) -> list[Path]:
    found: list[Path] = []
    for base in (state_dir, state_dir / "logs"):
        if base.is_dir():
            found.extend(sorted(p for p in base.iterdir() if p.is_file() and ".log" in p.name))
    found.extend(p for p in extra if p.is_file())
    return found


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - LOG_TAIL_BYTES))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    if size > LOG_TAIL_BYTES:  # drop the partial first line
        text = f"[… first {size - LOG_TAIL_BYTES} bytes omitted …]\n" + text.split("\n", 1)[-1]
    return text


def _journal_render(entry, redactor: Redactor) -> dict[str, Any]:
    body = entry.body if isinstance(entry.body, dict) else {}
    out: dict[str, Any] = {"seq": entry.seq, "kind": entry.kind, "time_ms": entry.time, "digest": entry.digest,
                           "hash": entry.hash.hex()}
    for key in ("req", "mode", "cause", "cancels", "code", "ref_seq", "outcome"):
        if key in body:
            out[key] = body[key]
    for key in ("amounts", "paid", "state_after"):
        if isinstance(body.get(key), dict):
            out[key] = dict(body[key])
    items = body.get("items")
    if isinstance(items, list):
        out["items"] = [{k: it.get(k) for k in ("code", "cnt", "pric")} for it in items if isinstance(it, dict)]
    if "psn_no" in body:
        out["psn_no"] = body["psn_no"]
    if isinstance(body.get("card"), dict):
        out["card"] = {"card_id": body["card"].get("card_id"), "keyed_in": body["card"].get("keyed_in")}
    if "what" in body:
        out["what"] = body["what"]
    return out


def _journal_part(ctx: Context, redactor: Redactor) -> tuple[dict, dict]:
    """(stats, unacknowledged rendering) from a private snapshot of the journal."""
    from edge.journal import JournalStore

    if ctx.workdir is None:
        raise RuntimeError("workdir not set")
    src = ctx.path(JOURNAL_FILE)
    sizes = {name: (ctx.path(name).stat().st_size if ctx.path(name).exists() else None)
             for name in (JOURNAL_FILE, JOURNAL_FILE + "-wal")}
    if not src.exists():
        return {"present": False, "files": sizes}, {"note": NOTE, "note_zh": NOTE_ZH, "entries": []}
    from ._context import snapshot_db

    copy = snapshot_db(src, ctx.workdir / "bundle-journal.db")
    try:
        store = JournalStore.open(copy, signing_key=None, device=None)
    except Exception as exc:  # a journal that does not open is itself the finding; say so in the bundle
        return ({"present": True, "files": sizes, "error": str(exc)},
                {"note": NOTE, "note_zh": NOTE_ZH, "entries": [], "error": str(exc)})
    with store:
        head, _ = store.head()
        acked = store.acked_seq
        backlog = store.backlog()
        kinds: dict[str, int] = {}
        first_time = last_time = None
        unacked: list[dict] = []
        # Learn first (every body), render after: a name that appears only in a later entry must
        # still be scrubbed from an earlier entry's free text.
        bodies: list[Any] = []
        for entry in store.entries():
            kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
            first_time = entry.time if first_time is None else first_time
            last_time = entry.time
            redactor.learn_from(entry.body)
            if entry.seq > acked and len(bodies) < UNACKED_LIMIT:
                bodies.append(entry)
        for entry in bodies:
            unacked.append(_journal_render(entry, redactor))
        stats = {"present": True, "device": store.device, "key_id": store.key_id, "head_seq": head,
                 "acked_seq": acked, "unacknowledged": max(0, head - acked),
                 "backlog": {"count": backlog.count, "oldest_time_ms": backlog.oldest_time_ms, "bytes": backlog.bytes},
                 "quarantined": [{"seq": s, "code": c, "message": m or ""}
                                 for s, c, m in store.quarantined()],
                 "kinds": kinds, "first_time_ms": first_time, "last_time_ms": last_time, "files": sizes}
    rendering = {"note": NOTE, "note_zh": NOTE_ZH, "device": stats["device"], "acked_seq": acked,
                 "count": max(0, head - acked), "rendered": len(unacked), "entries": unacked}
    return stats, rendering


def _versions(ctx: Context, report_dict: dict) -> dict:
    from importlib import metadata

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    pcscd = None
    if shutil.which("pcscd"):
        try:
            out = subprocess.run(["pcscd", "--version"], capture_output=True, text=True, timeout=3)
            pcscd = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else None
        except (OSError, subprocess.SubprocessError):
            pcscd = None
    bundles = next((f["data"].get("versions") for f in report_dict["findings"] if f["check"] == "bundles"), None)
    return {"agent": version("counter-settle"), "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
            "pyscard": version("pyscard"), "trio": version("trio"), "httpx": version("httpx"),
            "pcsc_lite": pcscd, "platform": platform.platform(), "bundles": bundles,
            "created_ms": ctx.clock_ms()}


def _config_part(ctx: Context, redactor: Redactor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    device = ctx.path(DEVICE_FILE)
    if device.exists():
        try:
            out["device.json"] = json.loads(device.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            out["device.json"] = {"error": f"unreadable: {exc}"}
    try:
        cfg = ctx.config()
        if cfg:
            out["edge.json"] = cfg
    except ValueError as exc:
        out["edge.json"] = {"error": str(exc)}
    return out


def _journalctl() -> str | None:
    if not shutil.which("journalctl") or not Path("/run/systemd/system").exists():
        return None
    try:
        out = subprocess.run(["journalctl", "-u", UNIT, "-n", "5000", "--no-pager", "-o", "short-iso"],
                             capture_output=True, text=True, timeout=JOURNALCTL_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _add(tar: tarfile.TarFile, name: str, data: str | bytes, mtime: float) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(raw), mtime, 0o600
    tar.addfile(info, io.BytesIO(raw))


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"


async def build_bundle(ctx: Context, out: str | os.PathLike, *, log_files: list[Path] | None = None,
                       diagnose: bool = True) -> BundleSummary:
    """Run diagnose, collect everything, redact it, and write the tar.gz to ``out`` (atomically)."""
    out = Path(out)
    redactor = Redactor()
    report = await run(ctx) if diagnose else None
    report_dict: dict[str, Any] = report.to_dict() if report is not None else {"status": "skipped", "findings": []}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edge-bundle-") as tmp:
        ctx.workdir = Path(tmp)
        try:
            config = await trio.to_thread.run_sync(_config_part, ctx, redactor)
            stats, unacked = await trio.to_thread.run_sync(_journal_part, ctx, redactor)
            logs = {}
            for path in await trio.to_thread.run_sync(_log_files, ctx.state_dir, list(log_files or [])):
                try:
                    logs[path.name] = await trio.to_thread.run_sync(_tail, path)
                except OSError as exc:
                    logs[path.name] = f"[unreadable: {exc}]"
            journald = await trio.to_thread.run_sync(_journalctl)
            if journald:
                logs[f"journalctl-{UNIT}.log"] = journald
            versions = await trio.to_thread.run_sync(_versions, ctx, report_dict)
        finally:
            ctx.workdir = None
    # Render last, after learning from every structured source, so a value named in one file is
    # scrubbed from all of them (a patient named in a journal note, then in a log line).
    for data in (report_dict, versions, stats, unacked, config):
        redactor.learn_from(data)
    files: dict[str, str] = {
        "README.txt": _readme(report_dict.get("status", "?")),
        "diagnose.json": _dump(redactor.obj(report_dict)),
        "versions.json": _dump(redactor.obj(versions)),
        "journal/stats.json": _dump(redactor.obj(stats)),
        "journal/unacknowledged.json": _dump(redactor.obj(unacked)),
    }
    for name, data in config.items():
        files[f"config/{name}"] = _dump(redactor.obj(data))
    for name, text in logs.items():
        files[f"logs/{name}"] = redactor.text(text)
    now = time.time()

    def write() -> int:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with tarfile.open(tmp, "w:gz") as tar:
                for name, data in files.items():
                    _add(tar, f"support-bundle/{name}", data, now)
            os.chmod(tmp, 0o600)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return out.stat().st_size

    size = await trio.to_thread.run_sync(write)
    return BundleSummary(out, tuple(files), int(unacked.get("count", 0) or 0), report_dict.get("status", "?"), size)


def _readme(status: str) -> str:
    return f"""Support bundle of the offline settlement agent (医保柜台脱机结算支持包)
Diagnose status: {status}

Personal data (names, social security numbers, card numbers, card identification codes, PINs) has
been redacted from every file. 所有文件中的姓名、社会保障号码、卡号、卡识别码和密码均已脱敏。

journal/unacknowledged.json: {NOTE}
{NOTE_ZH}

The device key is never included. 本支持包不含设备私钥。
"""
