"""1101 with mdtrt_cert_type 01 (医保电子凭证): the ecToken is resolved by the centre."""

from __future__ import annotations

from .context import Ctx
from .errors import StateError


async def by_token(ctx: Ctx, token: str) -> dict:
    raise StateError("e-voucher tokens are not resolved by this counter yet",
                     zh="暂不支持医保电子凭证，请使用社保卡或身份证", field="mdtrt_cert_no")
