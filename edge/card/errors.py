"""Everything that can go wrong on the card path, as one documented tree.

    CardError                    base: ``code`` (stable), ``message`` (English), ``zh`` (Chinese),
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
"""

from __future__ import annotations


class CardError(Exception):
    """Base of the card path's errors; ``str(err)`` is the English message."""

    code = "card_error"
    retryable = False

    def __init__(self, message: str, zh: str) -> None:
        super().__init__(message)
        self.message = message
        self.zh = zh

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "zh": self.zh, "retryable": self.retryable}


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
            "读卡服务（pcscd）未运行，请启动读卡服务后重试")


class NoReader(ReaderProblem):
    code = "no_reader"

    def __init__(self, reader: str | None = None) -> None:
        if reader:
            super().__init__(f"Card reader '{reader}' is not attached; check the cable or choose another reader",
                             f"未找到读卡器“{reader}”，请检查连接或选择其他读卡器")
        else:
            super().__init__("No card reader is attached; plug in the reader and try again",
                             "未连接读卡器，请插好读卡器后重试")
        self.reader = reader


class NoCard(CardError):
    code = "no_card"
    retryable = True

    def __init__(self, reader: str | None = None) -> None:
        where = f" '{reader}'" if reader else ""
        super().__init__(f"No card in the reader{where}; insert the social security card",
                         "读卡器中没有卡，请插入社会保障卡")
        self.reader = reader


class CardRemoved(CardError):
    code = "card_removed"
    retryable = True

    def __init__(self) -> None:
        super().__init__("The card was removed during the read; insert it again and keep it in the reader",
                         "读卡过程中卡被拔出，请重新插卡并保持插入")


class CardMute(CardError):
    code = "card_mute"
    retryable = True

    def __init__(self, detail: str = "") -> None:
        tail = f" ({detail})" if detail else ""
        super().__init__("The card does not answer; take it out, wipe the chip and insert it again. If it "
                         f"still fails, key in the card number and ID number{tail}",
                         "卡片无响应，请取出卡片、擦拭芯片后重新插入；仍失败请手工录入卡号和身份证号")


class CardMalformed(CardError):
    code = "card_malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(f"The card's data cannot be read ({detail}); the card may be damaged: key in the "
                         "card number and ID number, and send the holder to re-issue the card",
                         "卡内数据无法识别，卡片可能已损坏，请手工录入卡号和身份证号，并提醒参保人补换卡")
        self.detail = detail


class NotSocialSecurityCard(CardError):
    code = "not_social_security_card"

    def __init__(self, sw: int | None = None) -> None:
        tail = f" (status {sw:04X})" if sw is not None else ""
        super().__init__("This is not a social security card (no social security application); insert the "
                         f"patient's social security card{tail}",
                         "这不是社会保障卡，请插入参保人的社会保障卡")
        self.sw = sw


class CardStatusError(CardError):
    """The card answered a command with a status word other than success. ``sw`` is the word."""

    code = "card_status"

    def __init__(self, sw: int, message: str | None = None, zh: str | None = None) -> None:
        if message is None or zh is None:
            from .profile import describe_sw  # the table lives with the rest of the profile
            message, zh = describe_sw(sw)
        super().__init__(message, zh)
        self.sw = sw

    def to_dict(self) -> dict:
        return {**super().to_dict(), "sw": f"{self.sw:04X}"}


class WrongPin(CardStatusError):
    code = "wrong_pin"
    retryable = True

    def __init__(self, tries_left: int) -> None:
        super().__init__(0x63C0 | tries_left,
                         f"Wrong PIN, {tries_left} {'try' if tries_left == 1 else 'tries'} left; ask the "
                         "patient to enter it again",
                         f"密码错误，还可尝试{tries_left}次，请参保人重新输入")
        self.tries_left = tries_left

    def to_dict(self) -> dict:
        return {**super().to_dict(), "tries_left": self.tries_left}


class PinBlocked(CardStatusError):
    code = "pin_blocked"

    def __init__(self, sw: int = 0x6983) -> None:
        super().__init__(sw, "The card's PIN is blocked; the holder must unblock it at a social security "
                             "service point. Nothing can be settled with this card now",
                         "社保卡密码已锁定，请参保人到社保服务网点解锁，本次不能用此卡结算")


class CardRefused(CardError):
    code = "card_refused"


class CardExpired(CardRefused):
    code = "card_expired"

    def __init__(self, expires) -> None:
        super().__init__(f"The card expired on {expires.isoformat()}; it cannot be used. The holder must "
                         "renew it at a social security service point",
                         f"社保卡已于{expires.isoformat()}过期，不能使用，请参保人到社保服务网点换卡")
        self.expires = expires

    def to_dict(self) -> dict:
        return {**super().to_dict(), "expires": self.expires.isoformat()}


HOTLIST_REASONS = {
    "lost": ("reported lost", "已挂失"),
    "reissued": ("replaced by a newer card", "已补换新卡"),
    "blocked": ("blocked by the social security centre", "已被社保中心停用"),
}


class CardHotlisted(CardRefused):
    code = "card_hotlisted"

    def __init__(self, reason: str) -> None:
        en, zh = HOTLIST_REASONS.get(reason, (reason, reason))
        super().__init__(f"This card is on the hotlist ({en}); do not settle with it. Keep the card and "
                         "send the holder to a social security service point",
                         f"此卡{zh}（黑名单卡），不能结算，请参保人到社保服务网点办理")
        self.reason = reason

    def to_dict(self) -> dict:
        return {**super().to_dict(), "reason": self.reason}


class CardInputError(CardError):
    code = "card_input"
    retryable = True

    def __init__(self, field: str, message: str, zh: str) -> None:
        super().__init__(message, zh)
        self.field = field

    def to_dict(self) -> dict:
        return {**super().to_dict(), "field": self.field}


class SessionOrderError(CardError):
    code = "session_order"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"Card session: event '{event}' is not allowed in state '{state}' (a bug in the "
                         "agent; report it to the technician)",
                         "读卡流程顺序错误（程序缺陷），请联系技术人员")
        self.state = state
        self.event = event
