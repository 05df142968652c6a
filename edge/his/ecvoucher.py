"""1101 with mdtrt_cert_type 01 (医保电子凭证): the ecToken is resolved by the centre, online only.

The counter never decodes a token (it is opaque, as the national decoder's are): it asks the centre
(``POST /v1/ectoken/resolve``, device-signed like the online settlement, bounded by the same
``online_timeout``) for the person it stands for. With the centre unreachable the person cannot be
identified, and 1101 is refused with a Chinese message telling the clerk to use the card or the ID
number (which settle offline or become a full-payment claim).
"""

from __future__ import annotations

import json

import httpx
import trio

from .context import Ctx
from .errors import StateError

PATH = "/v1/ectoken/resolve"
OFFLINE_ZH = "医保中心暂时无法连接，无法核验医保电子凭证：请改用社保卡或身份证办理（脱机时按规定结算或全额垫付）"


async def resolve(ctx: Ctx, token: str) -> str:
    """The psn_no the centre gives for ``token``; :class:`StateError` when it cannot or will not."""
    centre = ctx.counter.centre
    # The counter's centre client signs with the device key; its signer and HTTP client are reused so
    # that this call is authenticated exactly like the online settlement.
    sign, client = getattr(centre, "_sign", None), getattr(centre, "_client", None)
    if centre is None or sign is None or client is None:
        raise StateError("no centre configured", zh=OFFLINE_ZH, field="mdtrt_cert_no")
    body = json.dumps({"ec_token": token}, ensure_ascii=False).encode("utf-8")
    headers = {"content-type": "application/json", **sign("POST", PATH, body)}
    resp = None
    try:
        with trio.move_on_after(ctx.counter.settings.online_timeout):
            resp = await client.post(centre.base_url + PATH, content=body, headers=headers)
    except httpx.HTTPError:
        resp = None
    if resp is not None and resp.status_code == 404 and _code(resp) == "unknown_token":
        raise StateError("the centre does not know this e-voucher token",
                         zh="医保电子凭证无效或已过期，请患者刷新电子凭证后重试", field="mdtrt_cert_no")
    if resp is None or resp.status_code != 200:
        raise StateError("the centre is unreachable: the e-voucher cannot be resolved", zh=OFFLINE_ZH,
                         field="mdtrt_cert_no")
    psn_no = resp.json().get("psn_no")
    if not isinstance(psn_no, str) or not psn_no:
        raise StateError("the centre's answer has no psn_no", zh=OFFLINE_ZH, field="mdtrt_cert_no")
    return psn_no


def _code(resp: httpx.Response) -> str | None:
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        return None
    return err.get("code") if isinstance(err, dict) else None
