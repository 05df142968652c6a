"""The device's Ed25519 key: created once at enrolment, private to the agent's user, never logged.

The file holds the raw 32-byte seed and nothing else. It is created with ``O_EXCL`` and mode 0600
(an existing key is never overwritten: that would orphan every entry it signed), fsynced with its
directory so enrolment survives a power cut. Loading refuses a key that others can read: a key that
leaked cannot prove anything any more, so the technician must fix the mode before settling resumes.
The centre only ever sees the public key (:func:`public_key_b64`) and its :func:`key_id`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

from sync.keys import key_id, public_key_b64, verify_key_from_text  # noqa: F401  (one definition, in the sync root)

from .errors import JournalReadOnly, KeyCorrupt, KeyExists, KeyMissing, KeyPermissions, map_sqlite_error

SEED_BYTES = 32

__all__ = ["create_device_key", "load_device_key", "public_key_b64", "verify_key_from_text", "key_id"]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_device_key(path: str | os.PathLike) -> SigningKey:
    """Generate a new device key at ``path`` (mode 0600, directory created). Refuses to overwrite."""
    path = Path(path)
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        key = SigningKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(f"a device key already exists at {path}") from None
    except OSError as exc:
        raise map_sqlite_error(exc, str(path)) from exc
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make the mode exact
        os.write(fd, bytes(key))
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise map_sqlite_error(exc, str(path)) from exc
    os.close(fd)
    _fsync_dir(path.parent)
    return key


def load_device_key(path: str | os.PathLike) -> SigningKey:
    """Read the device key; KeyMissing / KeyPermissions / KeyCorrupt say what is wrong and what to do."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyMissing(f"no device key at {path}") from None
    except PermissionError as exc:
        raise JournalReadOnly(f"the device key {path} cannot be read by this user",
                              hint="Run the agent as the user that owns the state directory.") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyCorrupt(f"the device key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyPermissions(f"the device key {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o})",
                             hint=f"Run: chmod 600 {path}  (then restart the agent)")
    try:
        seed = path.read_bytes()
    except PermissionError as exc:
        raise JournalReadOnly(f"the device key {path} cannot be read by this user",
                              hint="Run the agent as the user that owns the state directory.") from exc
    if len(seed) != SEED_BYTES:
        raise KeyCorrupt(f"the device key {path} has {len(seed)} bytes, expected {SEED_BYTES}")
    return SigningKey(seed)
