"""Everything that can go wrong on the card path, as one documented tree.

    Problem (sync.problem)       the project's one error base
    └ CardError                  base: ``code`` (stable), ``message`` (English), ``zh`` (Chinese),
    │                            ``retryable`` (the same action may work if the clerk tries again)
    ├── ReaderProblem            the PC/SC side (a technician fixes these, not the patient)
    │   ├── PcscUnavailable      pcsc_unavailable: the pcscd service is not running / not reachable
    │   └── NoReader             no_reader: no card reader attached (or the one named is not there)
    ├── NoCard                   no_card: a reader is there but holds no card
    ├── CardRemoved              card_removed: the card left the reader before the read finished
    ├── CardMute                 card_mute: the card did not answer in time
    ├── CardMalformed            card_malformed: the answer is not what the profile allows
    ├── NotSocialSecurityCard    not_social_security_card: no social-security application (SELECT)
    ├── CardStatusError          card_status: the card refused a command (``sw`` says how)
    │   ├── WrongPin             wrong_pin: VERIFY failed, ``tries_left`` > 0
    │   └── PinBlocked           pin_blocked: no tries left (63C0 or 6983)
    ├── CardRefused              policy refusals of a card that was read correctly
    │   ├── CardExpired          card_expired: past its valid-until date
    │   └── CardHotlisted        card_hotlisted: on the centre's hotlist (``reason``)
    ├── CardInputError           card_input: what the clerk typed is not valid (PIN, keyed-in data)
    └── SessionOrderError        session_order: our code drove the session out of order (a bug)

"The card/reader misbehaved" (everything under ReaderProblem, NoCard ... CardStatusError) is kept
apart from "we did something illegal" (SessionOrderError) and "the clerk typed something wrong"
(CardInputError). Foreign exceptions (pyscard) never escape :mod:`edge.card.pcsc`: they are mapped
to these with ``raise ... from exc``.

Every class takes :class:`sync.problem.Problem`'s constructor shape ``(message, *, zh=…, **detail)``;
the classes below with structured arguments (a reader name, a status word, tries left) build their
English and Chinese text from them and pass it on in that shape. ``zh`` is Chinese from end to end:
technical names (pyscard codes, status words in hex) go into ``message`` and ``detail``, never into
``zh``. Structured extras (``sw``, ``tries_left``, ``expires``, ``reason``, ``field``) appear in
:meth:`to_dict`.
"""

from __future__ import annotations

import datetime as dt

from sync.problem import Problem

from .status import describe_sw


class CardError(Problem):
    """Base of the card path's errors; ``str(err)`` is the English message."""

    code = "card_error"
    zh = "读卡失败，请重新插卡；仍失败请联系技术人员"
    retryable = False


class ReaderProblem(CardError):
    code = "reader_problem"
    retryable = True


class PcscUnavailable(ReaderProblem):
    code = "pcsc_unavailable"

    def __init__(self, detail: str = "") -> None:
        tail = f" ({detail})" if detail else ""
        super().__init__(
            "The smart-card service (pcscd) is not running; start it (scripts/services, or "
            f"'systemctl start pcscd') and try again{tail}",
            zh="读卡服务（pcscd）未运行，请启动读卡服务后重试")


class NoReader(ReaderProblem):
    code = "no_reader"

    def __init__(self, reader: str | None = None) -> None:
        if reader:
            super().__init__(f"Card reader '{reader}' is not attached; check the cable or choose another reader",
                             zh=f"未找到读卡器“{reader}”，请检查连接或选择其他读卡器")
        else:
            super().__init__("No card reader is attached; plug in the reader and try again",
                             zh="未连接读卡器，请插好读卡器后重试")
        self.reader = reader


class NoCard(CardError):
    code = "no_card"
    retryable = True

    def __init__(self, reader: str | None = None) -> None:
        where = f" '{reader}'" if reader else ""
        super().__init__(f"No card in the reader{where}; insert the social security card",
                         zh="读卡器中没有卡，请插入社会保障卡")
        self.reader = reader


class CardRemoved(CardError):
    code = "card_removed"
    retryable = True

    def __init__(self) -> None:
        super().__init__("The card was removed during the read; insert it again and keep it in the reader",
                         zh="读卡过程中卡被拔出，请重新插卡并保持插入")


class CardMute(CardError):
    code = "card_mute"
    retryable = True

    def __init__(self, detail: str = "") -> None:
        tail = f" ({detail})" if detail else ""
        super().__init__("The card does not answer; take it out, wipe the chip and insert it again. If it "
                         f"still fails, key in the card number and ID number{tail}",
                         zh="卡片无响应，请取出卡片、擦拭芯片后重新插入；仍失败请手工录入卡号和身份证号")


class CardMalformed(CardError):
    code = "card_malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(f"The card's data cannot be read ({detail}); the card may be damaged: key in the "
                         "card number and ID number, and send the holder to re-issue the card",
                         zh="卡内数据无法识别，卡片可能已损坏，请手工录入卡号和身份证号，并提醒参保人补换卡")


class NotSocialSecurityCard(CardError):
    code = "not_social_security_card"

    def __init__(self, sw: int | None = None) -> None:
        tail = f" (status {sw:04X})" if sw is not None else ""
        super().__init__("This is not a social security card (no social security application); insert the "
                         f"patient's social security card{tail}",
                         zh="这不是社会保障卡，请插入参保人的社会保障卡")
        self.sw = sw


class CardStatusError(CardError):
    """The card answered a command with a status word other than success. ``sw`` is the word."""

    code = "card_status"

    def __init__(self, sw: int, message: str | None = None, *, zh: str | None = None, **detail) -> None:
        if message is None or zh is None:
            message, zh = describe_sw(sw)
        super().__init__(message, zh=zh, sw=f"{sw:04X}", **detail)
        self.sw = sw


class WrongPin(CardStatusError):
    code = "wrong_pin"
    retryable = True

    def __init__(self, tries_left: int) -> None:
        super().__init__(0x63C0 | tries_left,
                         f"Wrong PIN, {tries_left} {'try' if tries_left == 1 else 'tries'} left; ask the "
                         "patient to enter it again",
                         zh=f"密码错误，还可尝试{tries_left}次，请参保人重新输入", tries_left=tries_left)
        self.tries_left = tries_left


class PinBlocked(CardStatusError):
    code = "pin_blocked"

    def __init__(self, sw: int = 0x6983) -> None:
        super().__init__(sw, "The card's PIN is blocked; the holder must unblock it at a social security "
                             "service point. Nothing can be settled with this card now",
                         zh="社保卡密码已锁定，请参保人到社保服务网点解锁，本次不能用此卡结算")


class CardRefused(CardError):
    code = "card_refused"


class CardExpired(CardRefused):
    code = "card_expired"

    def __init__(self, expires: dt.date) -> None:
        super().__init__(f"The card expired on {expires.isoformat()}; it cannot be used. The holder must "
                         "renew it at a social security service point",
                         zh=f"社保卡已于{expires.isoformat()}过期，不能使用，请参保人到社保服务网点换卡",
                         expires=expires.isoformat())
        self.expires = expires


HOTLIST_REASONS = {
    "lost": ("reported lost", "已挂失"),
    "reissued": ("replaced by a newer card", "已补换新卡"),
    "blocked": ("blocked by the social security centre", "已被社保中心停用"),
}


class CardHotlisted(CardRefused):
    code = "card_hotlisted"

    def __init__(self, reason: str) -> None:
        # An unknown reason code stays in the English message only: the clerk reads Chinese.
        en, zh = HOTLIST_REASONS.get(reason, (reason, "已列入黑名单"))
        super().__init__(f"This card is on the hotlist ({en}); do not settle with it. Keep the card and "
                         "send the holder to a social security service point",
                         zh=f"此卡{zh}（黑名单卡），不能结算，请参保人到社保服务网点办理", reason=reason)
        self.reason = reason


class CardInputError(CardError):
    code = "card_input"
    retryable = True

    def __init__(self, message: str, *, zh: str, field: str) -> None:
        super().__init__(message, zh=zh, field=field)
        self.field = field


class SessionOrderError(CardError):
    code = "session_order"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"Card session: event '{event}' is not allowed in state '{state}' (a bug in the "
                         "agent; report it to the technician)",
                         zh="读卡流程顺序错误（程序缺陷），请联系技术人员")
        self.state = state
        self.event = event
