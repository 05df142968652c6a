"""9001 签到 / 9002 签退: the operator's sign-in number. The national platform ties later messages to
it; here it is recorded and answered, and a later message without one is still served (kiosks send
none, HSA-INTERFACE.md section 2)."""

from __future__ import annotations

from .context import Ctx, node, text
from .envelope import dt_text
from .errors import StateError
from .result import Out


async def sign_in(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "signIn")
    opter = text(d, "opter_no", most=30)
    sign_no = ctx.new_id("S")
    await ctx.thread(ctx.store.put, "sign", sign_no, {"opter_no": opter, "mac": text(d, "mac", required=False),
                                                      "ip": text(d, "ip", required=False), "in": dt_text(ctx.now)})
    return Out({"signinoutb": {"sign_time": dt_text(ctx.now), "sign_no": sign_no}})


async def sign_out(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "signOut")
    sign_no = text(d, "sign_no", most=30)
    doc = await ctx.thread(ctx.store.get, "sign", sign_no)
    if doc is None:
        raise StateError(f"sign_no {sign_no} is unknown", zh=f"签到编号{sign_no}不存在", field="sign_no")
    doc["out"] = dt_text(ctx.now)
    await ctx.thread(ctx.store.put, "sign", sign_no, doc)
    return Out({"signoutoutb": {"sign_time": dt_text(ctx.now)}})


HANDLERS = {"9001": sign_in, "9002": sign_out}
