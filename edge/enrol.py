"""Enrolment of a device with the city centre, and the device's identity file ``device.json``.

``await enroll(url, token, state_dir)`` creates the device key (``device.key``, 0600) if there is
none, registers its public key with the centre using the one-time token, and writes ``device.json``::

    {"device": "D-S330300001-1", "site": "S330300001", "centre_url": "http://…",
     "bundle_key": "<base64 Ed25519 public key>", "bundle_key_id": "…", "enrolled_at": "2026-11-24T09:30:00Z"}

``bundle_key`` is the centre's bundle-signing key, pinned here: bundles signed by any other key are
refused. Re-enrolling an enrolled state directory is refused (it would orphan the journal's chain);
retrying after a lost answer with the same token and key is idempotent at the centre.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from sync.errors import SyncError

DEVICE_FILE = "device.json"
KEY_FILE = "device.key"


class EnrolError(SyncError):
    code = "enrol_error"


class AlreadyEnrolled(EnrolError):
    code = "already_enrolled"


class NotEnrolled(EnrolError):
    code = "not_enrolled"


@dataclass(frozen=True)
class DeviceConfig:
    device: str
    site: str
    centre_url: str
    bundle_key: str
    bundle_key_id: str
    enrolled_at: str

    @property
    def bundle_verify_key(self) -> VerifyKey:
        return VerifyKey(base64.b64decode(self.bundle_key))


def load_device(state_dir: str | os.PathLike) -> DeviceConfig:
    path = Path(state_dir) / DEVICE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DeviceConfig(**{k: data[k] for k in DeviceConfig.__dataclass_fields__})
    except FileNotFoundError:
        raise NotEnrolled(f"this device is not enrolled ({path} is missing): run `edge enroll URL TOKEN` with a "
                          "token from the centre") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrolError(f"{path} is damaged ({exc}): restore it from the support bundle or re-enrol") from exc


def save_device(state_dir: str | os.PathLike, cfg: DeviceConfig) -> Path:
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path, tmp = d / DEVICE_FILE, d / (DEVICE_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(cfg), f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


JOURNAL_FILE = "journal.db"


def device_key(state_dir: str | os.PathLike) -> SigningKey:
    from edge.journal.keys import create_device_key, load_device_key
    from edge.journal.errors import KeyMissing

    path = Path(state_dir) / KEY_FILE
    try:
        return load_device_key(path)
    except KeyMissing:
        # A key is created only for a fresh state directory. Beside a journal or an enrolment, a new
        # key would sign entries the centre refuses and orphan the journal: the old key must come back.
        for other in (Path(state_dir) / JOURNAL_FILE, Path(state_dir) / DEVICE_FILE):
            if other.exists():
                raise KeyMissing(
                    f"the device key {path} is missing but {other} exists: restore {path} from the backup or "
                    "support bundle (a new key would not match the journal or the enrolment)",
                    zh=f"设备密钥文件 {path} 丢失，但已有记账或登记数据：请从备份恢复该文件，切勿新建密钥",
                    code="key_missing_restore", file=str(path)) from None
        return create_device_key(path)


async def enroll(url: str, token: str, state_dir: str | os.PathLike, *, client=None) -> DeviceConfig:
    """Register this device with the centre at ``url``; returns and saves the device config."""
    from sync import protocol
    from edge.transport import post_frame

    state_dir = Path(state_dir)
    if (state_dir / DEVICE_FILE).exists():
        cfg = load_device(state_dir)
        raise AlreadyEnrolled(f"this state directory is already enrolled as {cfg.device} with {cfg.centre_url}; "
                              "re-enrolment is refused (it would cut the journal off from the centre)")
    key = device_key(state_dir)
    pub = bytes(key.verify_key)
    msg = protocol.Enrol(token, pub, key.sign(protocol.Enrol.signed_bytes(token, pub)).signature).to_msg()
    reply = protocol.Enrolled.from_msg(await post_frame(url.rstrip("/") + "/v1/enrol", msg, client=client))
    cfg = DeviceConfig(device=reply.device, site=reply.site, centre_url=url.rstrip("/"),
                       bundle_key=base64.b64encode(reply.bundle_key).decode(), bundle_key_id=reply.bundle_key_id,
                       enrolled_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    save_device(state_dir, cfg)
    return cfg
