"""The centre's bundle-signing key, kept in its data directory as ``bundle.key`` (32-byte seed, 0600).

Edges pin the public half at enrolment (``device.json``); losing this file means every edge must be
re-enrolled, so back the data directory up. Created on first use, atomically (write, fsync, rename).
"""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from sync.centre.errors import KeyFileError
from sync.keys import key_id  # noqa: F401  (one definition, in the sync root)

KEY_FILE = "bundle.key"



def load_or_create(data_dir: str | os.PathLike) -> SigningKey:
    d = Path(data_dir)
    path = d / KEY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise KeyFileError(f"{path} is not a 32-byte Ed25519 seed: restore it from the backup of the data "
                               "directory (a new key would make every edge refuse new bundles)")
        return SigningKey(seed)
    d.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    tmp = d / (KEY_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, bytes(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return key
