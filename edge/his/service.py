"""The 两定接口 dispatcher: one envelope in, one envelope out.

Every message is answered with HTTP 200 and an envelope (envelope.py); a refusal is ``infcode`` -1 with
the Chinese ``err_msg`` of the error (this package's :mod:`~edge.his.errors`, or the counter's own
``CounterError``). Messages are handled one at a time (the counter serialises visits anyway), so a
msgid is looked up and answered atomically:

* a msgid answered before, with the same infno and ``input``, gets the stored answer, byte for byte
  (money moves once; the journal's own ``req`` = msgid backs this up); with another ``input`` (another
  cart, another patient) it is refused: the first answer would let the HIS book a payment for a cart
  that was never settled;
* a msgid used before for another infno is refused;
* a msgid that 2601 reversed before it ever arrived is refused.

Successful answers are stored; so is a full-payment answer (it journaled a claim). Other refusals are
not stored: nothing happened, and the HIS may correct the request and send it again.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from sync.problem import Problem

from . import outpatient, person, pharmacy, reversal, sign, statement
from .context import Ctx
from .envelope import CST, Request, answer, area, dumps, parse
from .errors import EnvelopeError, FullPaymentTaken, HisError, MsgidReused, StateError
from .result import Out
from .store import HisStore

log = logging.getLogger("edge.his")
Handler = Callable[[Ctx], Awaitable[Out]]
HANDLERS: dict[str, Handler] = {**sign.HANDLERS, **person.HANDLERS, **outpatient.HANDLERS, **pharmacy.HANDLERS,
                                **reversal.HANDLERS, **statement.HANDLERS}
SERVED = frozenset(HANDLERS)


class HisService:
    def __init__(self, counter: Any, store: HisStore, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self.counter = counter
        self.store = store
        self._now = now or (lambda: dt.datetime.now(CST))
        self._lock = trio.Lock()

    @classmethod
    def beside_journal(cls, counter: Any) -> "HisService":
        """The service with its store in ``his.db`` next to the counter's journal."""
        return cls(counter, HisStore(Path(counter.journal.path).with_name("his.db")))

    async def handle(self, raw: bytes, path_infno: str | None = None, *, operator: Any = None) -> bytes:
        received = self._now()
        try:
            req = parse(raw, path_infno=path_infno, served=SERVED, now=received)
        except EnvelopeError as exc:
            return dumps(answer("000000", received, self._now(), err_msg=exc.zh))
        async with self._lock:
            return await self._answer(req, operator)

    async def _answer(self, req: Request, operator: Any) -> bytes:
        here = area(req.header)
        prior = await trio.to_thread.run_sync(self.store.message, req.msgid)
        if prior is not None:
            same = prior["infno"] == req.infno and prior["digest"] in (None, req.digest)
            if prior["answer"] and same:
                return prior["answer"].encode("utf-8")
            if not prior["answer"]:
                exc: HisError = StateError("this msgid was reversed (2601) before it arrived",
                                           zh="该报文ID已被冲正(2601)，不再受理")
            elif prior["infno"] == req.infno:
                exc = MsgidReused(f"msgid {req.msgid} answered another {req.infno} (another input) already",
                                  zh=f"报文ID {req.msgid} 已用于内容不同的交易{req.infno}，请使用新的报文ID；"
                                     "原交易的结果请用原报文重发查询")
            else:
                exc = MsgidReused(f"msgid {req.msgid} answered a {prior['infno']} already",
                                  zh=f"报文ID {req.msgid} 已用于交易{prior['infno']}，请使用新的报文ID")
            return dumps(answer(here, req.received, self._now(), err_msg=exc.zh))
        ctx = Ctx(self.counter, self.store, req, req.received, operator)
        try:
            out = await HANDLERS[req.infno](ctx)
        except FullPaymentTaken as exc:
            body = dumps(answer(here, req.received, self._now(), err_msg=exc.zh))
            await trio.to_thread.run_sync(self.store.remember, req.msgid, req.infno, body, exc.detail.get("seq"),
                                     req.digest)
            return body
        except Problem as exc:    # this package's errors, the counter's, the body contract's
            log.info("his refused", extra={"event": "his_refused", "infno": req.infno, "code": exc.code})
            return dumps(answer(here, req.received, self._now(), err_msg=exc.zh or "交易失败"))
        body = dumps(answer(here, req.received, self._now(), output=out.output, warn_msg=out.warn))
        await trio.to_thread.run_sync(self.store.remember, req.msgid, req.infno, body, out.seq, req.digest)
        log.info("his answered", extra={"event": "his_answered", "infno": req.infno, "seq": out.seq})
        return body
