"""Running the agent as a systemd service: install and uninstall (Windows: see docs/operations.md).

``install(root)`` puts four things under ``root`` (``/`` on a counter, a temporary directory in tests
and packaging):

    etc/systemd/system/counter-edge.service   the unit (packaging/systemd/), ExecStart = this `edge`
    usr/lib/sysusers.d/counter-edge.conf      the system user counter-edge (created via systemd-sysusers)
    etc/polkit-1/rules.d/60-counter-edge.rules lets that user talk to pcscd (Debian's pcscd asks polkit)
    var/lib/counter-edge/                     the state directory, 0700, owned by counter-edge

On a live system (``root`` is ``/`` and systemd runs) it then reloads systemd and enables and starts
the unit; otherwise it prints the commands to run. ``uninstall(root)`` removes the unit, sysusers and
polkit files, and **never** the state directory; it refuses while the journal holds entries the
centre has not acknowledged (DOMAIN.md section 5), unless forced - and even then the data stays.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from sync.problem import Problem

UNIT = "counter-edge"
USER = "counter-edge"
STATE = Path("var/lib/counter-edge")
UNIT_PATH = Path("etc/systemd/system") / f"{UNIT}.service"
SYSUSERS_PATH = Path("usr/lib/sysusers.d") / f"{UNIT}.conf"
POLKIT_PATH = Path("etc/polkit-1/rules.d") / f"60-{UNIT}.rules"
TEMPLATE = Path(__file__).resolve().parents[1] / "packaging" / "systemd" / f"{UNIT}.service"

SYSUSERS = f'u {USER} - "Counter settlement agent" /var/lib/counter-edge /usr/sbin/nologin\n'
POLKIT = f"""// Let the counter agent's service user use the smart-card service (pcscd asks polkit on Debian).
polkit.addRule(function(action, subject) {{
    if ((action.id == "org.debian.pcsc-lite.access_pcsc" ||
         action.id == "org.debian.pcsc-lite.access_card") && subject.user == "{USER}") {{
        return polkit.Result.YES;
    }}
}});
"""


class ServiceError(Problem):
    """Install/uninstall cannot proceed; the message says what to do next (a one-class tree under
    Problem: the technician reads it on the command line)."""

    code = "service_error"
    zh = "无法安装或卸载系统服务，请按提示处理后重试"


def unit_text(exec_path: str) -> str:
    """The unit file with ExecStart pointing at ``exec_path``."""
    if not TEMPLATE.exists():
        raise ServiceError(f"the unit template {TEMPLATE} is missing: reinstall the agent package")
    return TEMPLATE.read_text(encoding="utf-8").replace("@EDGE@", exec_path)


def default_exec() -> str:
    beside = Path(sys.executable).parent / "edge"
    if beside.exists():
        return str(beside)
    found = shutil.which("edge")
    if found:
        return found
    raise ServiceError("cannot find the `edge` executable: pass --exec /path/to/edge")


def _live(root: Path) -> bool:
    return root.resolve() == Path("/") and Path("/run/systemd/system").exists()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _uid_gid(root: Path) -> tuple[int, int] | None:
    """counter-edge's uid/gid in ``root``'s /etc/passwd (not the host's, when root is elsewhere)."""
    passwd = root / "etc" / "passwd"
    if root.resolve() == Path("/"):
        try:
            pw = pwd.getpwnam(USER)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            return None
    if not passwd.exists():
        return None
    for line in passwd.read_text(encoding="utf-8").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == USER:
            return int(parts[2]), int(parts[3])
    return None


def install(root: Path = Path("/"), *, exec_path: str | None = None) -> list[str]:
    """Install the service under ``root``; returns what was done (lines for the technician)."""
    root = Path(root)
    done: list[str] = []
    exec_path = exec_path or default_exec()
    try:
        _write(root / UNIT_PATH, unit_text(exec_path))
        done.append(f"wrote {root / UNIT_PATH} (ExecStart={exec_path} run)")
        _write(root / SYSUSERS_PATH, SYSUSERS)
        _write(root / POLKIT_PATH, POLKIT)
        done.append(f"wrote {root / SYSUSERS_PATH} and {root / POLKIT_PATH}")
    except OSError as exc:
        raise ServiceError(f"cannot write under {root}: {exc.strerror or exc}; run as root (sudo)") from exc
    sysusers = shutil.which("systemd-sysusers")
    if sysusers:
        args = [sysusers] + ([] if root.resolve() == Path("/") else [f"--root={root}"]) + [str(root / SYSUSERS_PATH)]
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode != 0:
            raise ServiceError(f"systemd-sysusers could not create the user {USER}: {out.stderr.strip()}")
        done.append(f"user {USER} present")
    else:
        done.append(f"systemd-sysusers not found: create the system user {USER} by hand (useradd --system)")
    state = root / STATE
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    ids = _uid_gid(root)
    if ids is not None and os.geteuid() == 0:
        for path in [state, *state.rglob("*")]:
            os.chown(path, *ids, follow_symlinks=False)
    done.append(f"state directory {state} (0700, owner {USER})")
    if _live(root):
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT]):
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise ServiceError(f"`{' '.join(cmd)}` failed: {out.stderr.strip()}")
        done.append(f"enabled and started {UNIT}; check with `edge diagnose --state-dir /var/lib/counter-edge`")
    else:
        done.append(f"systemd is not running here: on the counter run `systemctl daemon-reload && "
                    f"systemctl enable --now {UNIT}`")
    return done


def unsent_entries(state: Path) -> int | None:
    """Unacknowledged journal entries in ``state`` (read-only snapshot); None when there is no journal."""
    import tempfile

    from edge.diagnose import snapshot_db
    from edge.journal import JournalStore

    journal = state / "journal.db"
    if not journal.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="edge-service-") as tmp:
        copy = snapshot_db(journal, Path(tmp) / "journal.db")
        with JournalStore.open(copy, signing_key=None, device=None) as store:
            return store.unacknowledged()


def uninstall(root: Path = Path("/"), *, force: bool = False) -> list[str]:
    """Remove the unit, sysusers and polkit files. Keeps the state directory. Refuses with unsent entries."""
    root = Path(root)
    state = root / STATE
    try:
        unsent = unsent_entries(state)
    except Exception as exc:  # an unreadable journal may hold unsent entries: treat it as such
        if not force:
            raise ServiceError(f"cannot read the journal in {state} ({exc}); it may hold unsent entries. "
                               "Run `edge diagnose`, or uninstall with --force (the state directory is kept)") from exc
        unsent = None
    if unsent and not force:
        raise ServiceError(f"uninstall refused: {unsent} journal entr{'y is' if unsent == 1 else 'ies are'} not yet "
                           "acknowledged by the centre. Let the agent sync first (`edge diagnose` shows the backlog), "
                           "or use --force: the state directory is always kept.")
    done: list[str] = []
    if _live(root):
        subprocess.run(["systemctl", "disable", "--now", UNIT], capture_output=True, text=True)
        done.append(f"stopped and disabled {UNIT}")
    for rel in (UNIT_PATH, SYSUSERS_PATH, POLKIT_PATH):
        path = root / rel
        if path.exists():
            path.unlink()
            done.append(f"removed {path}")
    if _live(root):
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, text=True)
    if state.exists():
        done.append(f"kept {state} (journal, device key, cache): delete it only after the centre confirmed every "
                    "entry" + (f"; {unsent} entries are still unsent" if unsent else ""))
    return done
