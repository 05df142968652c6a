"""The centre's bundle-signing key, kept in its data directory as ``bundle.key`` (32-byte seed, 0600).

Edges pin the public half at enrolment (``device.json``); losing this file means every edge must be
re-enrolled, so back the data directory up. Created on first use, atomically (write, fsync, rename).

Several workers (``centre run`` on several machines over one PostgreSQL) share ONE key: a deployed
secret given to every worker as a file (``--bundle-key FILE`` or the ``CENTRE_BUNDLE_KEY`` variable
naming the file), never created by a worker. :func:`check_recorded` records the key's id in the
database on first use (``centre migrate``, ``publish`` or ``run``) and refuses a worker whose key
has another id, so no worker signs with a key the edges did not pin.
"""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from sync.centre.errors import KeyFileError
from sync.keys import key_id  # noqa: F401  (one definition, in the sync root)

KEY_FILE = "bundle.key"
ENV = "CENTRE_BUNDLE_KEY"
SETTING = "bundle_key_id"


def load(path: str | os.PathLike) -> SigningKey:
    """A deployed key file; never created here (a worker inventing a key is the failure this prevents)."""
    p = Path(path)
    try:
        seed = p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the bundle-signing key {p}: {exc}; deploy the same key file to every "
                           "worker (--bundle-key FILE or CENTRE_BUNDLE_KEY)") from exc
    if len(seed) != 32:
        raise KeyFileError(f"{p} is not a 32-byte Ed25519 seed: deploy the centre's key file")
    return SigningKey(seed)


def resolve(data_dir: str | os.PathLike, key_file: str | None = None) -> SigningKey:
    """The key this process signs with: ``key_file``, else $CENTRE_BUNDLE_KEY, else the data
    directory's ``bundle.key`` (created on first use: the one-process embedded centre)."""
    path = key_file or os.environ.get(ENV)
    return load(path) if path else load_or_create(data_dir)


def check_recorded(store, key: SigningKey) -> str:
    """Record this key's id in the database if none is, and refuse a key with another id."""
    mine = key_id(key.verify_key)
    recorded = store.settle_setting(SETTING, mine)
    if recorded != mine:
        raise KeyFileError(f"this worker's bundle-signing key (id {mine}) is not the centre's (id {recorded}, "
                           "recorded in the database): give every worker the same deployed key file "
                           f"(--bundle-key FILE or {ENV}); edges refuse bundles signed by another key",
                           code="centre_key_mismatch", zh="本服务进程的签名密钥与医保中心登记的密钥不一致，拒绝启动")
    return mine



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
