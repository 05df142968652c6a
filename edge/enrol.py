"""Enrolment of a device with the city centre, and the device's identity file ``device.json``.

``await enroll(url, token, state_dir)`` creates the device key (``device.key``, 0600) if there is
none, registers its public key with the centre using the one-time token, and writes ``device.json``::

    {"device": "D-S330300001-1", "site": "S330300001", "centre_url": "http://…",
     "bundle_key": "<base64 Ed25519 public key>", "bundle_key_id": "…", "enrolled_at": "2026-11-24T09:30:00Z",
     "device_key_id": "…"}

``bundle_key`` is the centre's bundle-signing key, pinned here: bundles signed by any other key are
refused. ``device_key_id`` is the id of this device's own key (newer enrolments; diagnose compares the
key file with it). ``ca_file`` (``edge enroll --ca FILE``) is the CA that issued the centre's TLS
certificate: it is checked, copied to ``centre-ca.pem`` beside device.json and trusted alone from then
on (:mod:`edge.transport`). Re-enrolling an enrolled state directory is refused (it would orphan the journal's chain);
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

from edge.transport import CA_FILE
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
    device_key_id: str | None = None   # absent in device.json files written before it was recorded

    @property
    def bundle_verify_key(self) -> VerifyKey:
        return VerifyKey(base64.b64decode(self.bundle_key))


def load_device(state_dir: str | os.PathLike) -> DeviceConfig:
    path = Path(state_dir) / DEVICE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cfg = DeviceConfig(**{k: data[k] for k in DeviceConfig.__dataclass_fields__ if k in data or k not in OPTIONAL})
    except FileNotFoundError:
        raise NotEnrolled(f"this device is not enrolled ({path} is missing): run `edge enroll URL TOKEN` with a "
                          "token from the centre") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrolError(f"{path} is damaged ({exc}): restore it from the support bundle or re-enrol") from exc
    _pin_needs_https(Path(state_dir), cfg.centre_url)
    return cfg


def _pin_needs_https(state_dir: Path, url: str) -> None:
    """With the centre's CA pinned, the centre is reached over https only: an http:// address (typed at
    enrolment, or edited into device.json later) would send the token and every settlement in clear and
    unverified. Found by attacking."""
    if os.path.lexists(state_dir / CA_FILE) and not str(url).lower().startswith("https://"):
        raise EnrolError(f"{CA_FILE} pins the CA of the centre's TLS certificate, but the centre address {url} is "
                         "not https://: use the centre's https:// address", code="ca_needs_https",
                         zh=f"已指定中心根证书（{CA_FILE}），但中心地址不是 https:// 开头：请改用中心的 https:// 地址")


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
OPTIONAL = ("device_key_id",)


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


def install_ca(state_dir: Path, ca_file: str | os.PathLike) -> Path:
    """Check ``ca_file`` is a usable PEM CA and copy it to the state directory (atomically)."""
    from edge.transport import load_ca
    from sync.errors import TransportError

    try:
        load_ca(ca_file)
        pem = Path(ca_file).read_bytes()
    except (TransportError, OSError) as exc:
        raise EnrolError(f"the CA file {ca_file} cannot be used ({getattr(exc, 'message', exc)}): ask the centre for "
                         "the PEM file of the CA that issued its certificate", code="bad_ca_file",
                         zh=f"中心证书的根证书文件 {ca_file} 无法使用，请向医保中心索取正确的 PEM 证书文件") from exc
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path, tmp = state_dir / CA_FILE, state_dir / (CA_FILE + ".tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)
    return path


async def enroll(url: str, token: str, state_dir: str | os.PathLike, *, client=None,
                 ca_file: str | os.PathLike | None = None) -> DeviceConfig:
    """Register this device with the centre at ``url``; returns and saves the device config.
    ``ca_file``: the CA to trust for the centre's certificate from now on (see the module docstring)."""
    from sync import protocol
    from edge.transport import centre_client, post_frame

    state_dir = Path(state_dir)
    if (state_dir / DEVICE_FILE).exists():
        cfg = load_device(state_dir)
        raise AlreadyEnrolled(f"this state directory is already enrolled as {cfg.device} with {cfg.centre_url}; "
                              "re-enrolment is refused (it would cut the journal off from the centre)")
    if ca_file is not None:
        # A CA pinned for a centre reached in clear protects nothing: the token and every settlement
        # would cross the network readable and alterable. Found by attacking (a mistyped http://).
        if not url.lower().startswith("https://"):
            raise EnrolError(f"--ca pins the CA of the centre's TLS certificate, but {url} is not https://: "
                             "use the centre's https:// address", code="ca_needs_https",
                             zh="已指定中心根证书（--ca），但中心地址不是 https:// 开头：请改用中心的 https:// 地址")
        install_ca(state_dir, ca_file)
    else:
        _pin_needs_https(state_dir, url)
    key = device_key(state_dir)
    pub = bytes(key.verify_key)
    msg = protocol.Enrol(token, pub, key.sign(protocol.Enrol.signed_bytes(token, pub)).signature).to_msg()
    own = client is None
    http = centre_client(state_dir) if own else client
    try:
        reply = protocol.Enrolled.from_msg(await post_frame(url.rstrip("/") + "/v1/enrol", msg, client=http))
    finally:
        if own:
            await http.aclose()
    from sync.keys import key_id

    cfg = DeviceConfig(device=reply.device, site=reply.site, centre_url=url.rstrip("/"),
                       bundle_key=base64.b64encode(reply.bundle_key).decode(), bundle_key_id=reply.bundle_key_id,
                       enrolled_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       device_key_id=key_id(key.verify_key))
    save_device(state_dir, cfg)
    return cfg
