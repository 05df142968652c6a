"""Put virtual social security cards into pcscd's vpcd readers, for any test (``import vcard_support``).

    import vcard_support

    def test_something():
        vcard_support.require_pcsc()          # skips naming pcscd/vpcd; fails in CI
        with vcard_support.virtual_card(vcard_support.SAMPLE_CARD) as card:
            ...  # card.reader is the PC/SC reader name; the card is present there now
            card.set_faults({"mute": True})   # switch a fault while it runs
            card.pull()                       # take it out (also done on exit)

The context manager is synchronous (a subprocess and a few PC/SC calls), so trio tests use it
directly. On entry it waits until the reader is empty (a previous card may still be leaving) and
then until pcscd reports the new card present; on exit it stops the card process and waits until
the reader reports empty again. That last wait is the race seen in the field: pcscd polls vpcd about
every 400 ms, and a card connecting before the previous removal was noticed would look like the old
card never left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VCARD = ROOT / "firmware-interfaces" / "vcard" / "vcard.py"
CARDS = ROOT / "firmware-interfaces" / "vcard" / "cards"
BASE_PORT = 35963
READER_PREFIX = "Virtual PCD 00 0"


def load_card(name: str) -> dict:
    """A sample card from firmware-interfaces/vcard/cards/ (zhangsan, lisi, expired)."""
    return json.loads((CARDS / f"{name}.json").read_text(encoding="utf-8"))


SAMPLE_CARD = load_card("zhangsan")      # 张三, region 330300, PIN 123456
SECOND_CARD = load_card("lisi")          # 李四, PIN 654321, answers with 61xx (GET RESPONSE)
EXPIRED_CARD = load_card("expired")      # 欧阳建国, expired 2022-05-20


def _scard():
    try:
        from smartcard import scard
    except ImportError:
        return None
    return scard


def _readers() -> list[str] | None:
    """Reader names, or None when pcscd (or pyscard) is not there."""
    sc = _scard()
    if sc is None:
        return None
    rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if rc != sc.SCARD_S_SUCCESS:
        return None
    try:
        rc, names = sc.SCardListReaders(ctx, [])
        if rc == sc.SCARD_E_NO_READERS_AVAILABLE:
            return []
        return list(names) if rc == sc.SCARD_S_SUCCESS else None
    finally:
        sc.SCardReleaseContext(ctx)


def _virtual_readers(names: list[str] | None) -> list[str]:
    return sorted(n for n in names or [] if n.startswith(READER_PREFIX))


_started = False

# Several test runs may share one pcscd (engineers working side by side in one tree). Each vpcd slot
# is guarded by an flock on LOCK_DIR/vcard-slot-N.lock, so two runs never put cards into the same
# reader; exclusive_readers() takes every slot for tests that look at all readers (watchers, "no
# card anywhere"). Re-entrant within a process; released by the OS if the process dies.
LOCK_DIR = Path(os.environ.get("VCARD_LOCK_DIR", tempfile.gettempdir()))
SLOTS = (0, 1)
LOCK_WAIT_SECONDS = 120
_held: dict[int, list] = {}          # slot -> [fd, count]
_held_guard = threading.Lock()


def _acquire_slot(slot: int) -> None:
    with _held_guard:
        if slot in _held:
            _held[slot][1] += 1
            return
    fd = os.open(LOCK_DIR / f"vcard-slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(f"vpcd slot {slot} stayed in use by another test run for "
                                   f"{LOCK_WAIT_SECONDS} s ({LOCK_DIR}/vcard-slot-{slot}.lock)") from None
            time.sleep(0.05)
    with _held_guard:
        _held[slot] = [fd, 1]


def _release_slot(slot: int) -> None:
    with _held_guard:
        entry = _held[slot]
        entry[1] -= 1
        if entry[1]:
            return
        del _held[slot]
    fcntl.flock(entry[0], fcntl.LOCK_UN)
    os.close(entry[0])


@contextlib.contextmanager
def slot_lock(slot: int):
    _acquire_slot(slot)
    try:
        yield
    finally:
        _release_slot(slot)


@contextlib.contextmanager
def exclusive_readers():
    """Hold every vpcd slot (in ascending order, like everyone else: no deadlock)."""
    with contextlib.ExitStack() as stack:
        for slot in SLOTS:
            stack.enter_context(slot_lock(slot))
        yield


def pcsc_available() -> bool:
    """pcscd reachable and vpcd's readers listed. Starts pcscd through scripts/services once when
    it is not running (as root), then waits up to 10 s for the readers."""
    global _started
    if len(_virtual_readers(_readers())) >= 2:
        return True
    if not _started and os.geteuid() == 0 and (ROOT / "scripts" / "services").exists():
        _started = True
        subprocess.run([str(ROOT / "scripts" / "services")], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(_virtual_readers(_readers())) >= 2:
                return True
            time.sleep(0.2)
    return len(_virtual_readers(_readers())) >= 2


def require_pcsc() -> None:
    """Skip (or fail in CI) a test that needs pcscd + vpcd, naming what is missing."""
    import support

    support.require("pcscd with the vsmartcard vpcd readers (Debian: pcscd vsmartcard-vpcd)", pcsc_available())


def reader_for_slot(slot: int) -> str:
    names = _virtual_readers(_readers())
    wanted = f"{READER_PREFIX}{slot}"
    for name in names:
        if name.startswith(wanted):
            return name
    raise RuntimeError(f"vpcd reader for slot {slot} not found in {names}")


def reader_present(reader: str) -> bool:
    sc = _scard()
    rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    try:
        rc, states = sc.SCardGetStatusChange(ctx, 0, [(reader, sc.SCARD_STATE_UNAWARE)])
        return bool(rc == sc.SCARD_S_SUCCESS and states[0][1] & sc.SCARD_STATE_PRESENT)
    finally:
        sc.SCardReleaseContext(ctx)


def wait_reader(reader: str, *, present: bool, within: float = 10.0) -> None:
    """Block until pcscd reports the reader with (present=True) or without a card."""
    sc = _scard()
    rc, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    try:
        deadline = time.monotonic() + within
        state = sc.SCARD_STATE_UNAWARE
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                raise TimeoutError(f"reader {reader!r} did not become {'present' if present else 'empty'} "
                                   f"within {within} s; card processes running: {card_processes() or 'none'}")
            rc, states = sc.SCardGetStatusChange(ctx, min(left, 500), [(reader, state)])
            if rc == sc.SCARD_S_SUCCESS:
                state = states[0][1] & ~sc.SCARD_STATE_CHANGED
                if bool(state & sc.SCARD_STATE_PRESENT) == present and not (state & sc.SCARD_STATE_UNAVAILABLE):
                    return
    finally:
        sc.SCardReleaseContext(ctx)


def card_processes() -> list[str]:
    """Command lines of every vcard.py running on this machine (to explain a reader that stays busy:
    a card put in by hand or by the interactive demo takes no slot lock)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"vcard.py") for a in argv):
            found.append(f"pid {proc.name}: " + " ".join(a.decode(errors="replace") for a in argv if a))
    return found


class VirtualCardHandle:
    def __init__(self, slot: int, reader: str, workdir: Path, process: subprocess.Popen, log) -> None:
        self.slot = slot
        self.reader = reader
        self.workdir = workdir
        self.process = process
        self._log = log
        self._faults_path = workdir / "faults.json"

    def set_faults(self, faults: dict | None) -> None:
        """Switch faults while the card runs (see firmware-interfaces/vcard/model.py for the list)."""
        tmp = self.workdir / "faults.json.tmp"
        tmp.write_text(json.dumps(faults or {}), encoding="utf-8")
        os.replace(tmp, self._faults_path)   # a new inode: the card sees the change on its next frame

    @property
    def inserted(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return (self.workdir / "vcard.log").read_text(encoding="utf-8", errors="replace")

    def pull(self, *, wait_empty: bool = True) -> None:
        """Take the card out: stop the card process and wait until the reader reports empty."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if wait_empty:
            wait_reader(self.reader, present=False)

    def wait_gone(self, within: float = 10.0) -> None:
        """For the ``pull_after`` fault: wait until the card process has left on its own."""
        self.process.wait(within)
        wait_reader(self.reader, present=False)


@contextlib.contextmanager
def virtual_card(card: dict | None = None, *, slot: int = 0, faults: dict | None = None, verbose: bool = False,
                 extra_args: tuple[str, ...] = ()):
    """Insert a virtual card (default :data:`SAMPLE_CARD`) into vpcd reader ``slot`` (0 or 1)."""
    card = SAMPLE_CARD if card is None else card
    reader = reader_for_slot(slot)
    with slot_lock(slot), tempfile.TemporaryDirectory(prefix="vcard-") as tmp:
        wait_reader(reader, present=False)      # the previous card must have left first
        workdir = Path(tmp)
        (workdir / "card.json").write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
        (workdir / "faults.json").write_text(json.dumps(faults or {}), encoding="utf-8")
        cmd = [sys.executable, str(VCARD), "--card", str(workdir / "card.json"), "--port", str(BASE_PORT + slot),
               "--faults", str(workdir / "faults.json")] + (["--verbose"] if verbose else []) + list(extra_args)
        with open(workdir / "vcard.log", "w", encoding="utf-8") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            handle = VirtualCardHandle(slot, reader, workdir, process, log)
            try:
                try:
                    wait_reader(reader, present=True)
                except TimeoutError as exc:
                    raise RuntimeError(f"virtual card did not appear in {reader!r}: {handle.log()}") from exc
                yield handle
            finally:
                handle.pull()


@contextlib.asynccontextmanager
async def open_virtual_card(card: dict | None = None, *, slot: int = 0, faults: dict | None = None):
    """:func:`virtual_card` for trio code that must keep running while the card goes in and out
    (a watcher, a daemon): the blocking waits run in a worker thread."""
    import trio

    cm = virtual_card(card, slot=slot, faults=faults)
    handle = await trio.to_thread.run_sync(cm.__enter__)
    try:
        yield handle
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cm.__exit__, None, None, None)


def card_model():
    """The virtual card's pure firmware model (firmware-interfaces/vcard/model.py), for in-memory
    pairing with edge.card.session in unit tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vcard_model", VCARD.parent / "model.py")
    module = sys.modules.get("vcard_model")
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["vcard_model"] = module
        spec.loader.exec_module(module)
    return module
