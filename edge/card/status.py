"""Status words (SW1 SW2) of the social security card profile, in English and Chinese. Pure.

Both the error tree (:class:`edge.card.errors.CardStatusError` describes the word it carries) and the
profile (which maps a final status word to a typed error) read this table, so it sits below both.
See firmware-interfaces/card-profile.md.
"""

from __future__ import annotations


# sw (or the high byte for families) -> (English, Chinese). What the clerk reads.
STATUS_WORDS: dict[int, tuple[str, str]] = {
    0x9000: ("Success", "成功"),
    0x6281: ("Part of the returned data may be corrupted; try the card again",
             "返回数据可能已损坏，请重新读卡"),
    0x6283: ("The card's social security application is locked (invalidated); the holder must go to a "
             "social security service point", "社保应用已锁定，请参保人到社保服务网点办理"),
    0x6581: ("The card's memory failed; the card is damaged: key in the card number and ID number",
             "卡片存储器故障（卡已损坏），请手工录入卡号和身份证号"),
    0x6700: ("The card rejected the command length (wrong length); the card may not follow the profile",
             "卡片拒绝命令（长度错误），卡片可能不符合规范"),
    0x6982: ("The card requires authentication before this operation (security status not satisfied)",
             "卡片安全状态不满足，需先认证"),
    0x6983: ("The card's PIN is blocked", "社保卡密码已锁定"),
    0x6984: ("The card's reference data is invalidated; the holder must go to a social security "
             "service point", "卡片参考数据无效，请参保人到社保服务网点办理"),
    0x6985: ("The card refused: conditions of use not satisfied", "卡片使用条件不满足"),
    0x6A81: ("The card does not support this function", "卡片不支持此功能"),
    0x6A82: ("File or application not found on the card", "卡片上未找到文件或应用"),
    0x6A83: ("Record not found on the card; the card may be incompletely personalised",
             "卡片上未找到记录，卡片可能未完整写入"),
    0x6A86: ("The card rejected the command parameters (P1/P2)", "卡片拒绝命令参数"),
    0x6D00: ("The card does not know this command (INS not supported)", "卡片不支持该命令"),
    0x6E00: ("The card does not know this command class (CLA not supported)", "卡片不支持该命令类别"),
    0x6F00: ("The card reported an internal error with no detail", "卡片内部错误"),
}
# Families (high byte): 61xx more data (GET RESPONSE), 6Cxx wrong Le (resend with xx), 63Cx tries left.
SW_FAMILIES: dict[int, tuple[str, str]] = {
    0x61: ("More response data is waiting (GET RESPONSE)", "还有数据待取"),
    0x6C: ("Wrong expected length; the command is repeated with the right one", "期望长度错误，将按正确长度重发"),
    0x63: ("Verification failed; the low nibble of 63Cx is the number of tries left", "校验失败"),
}


def describe_sw(sw: int) -> tuple[str, str]:
    """English and Chinese for a status word (for messages and logs)."""
    if sw in STATUS_WORDS:
        return STATUS_WORDS[sw]
    if (sw >> 8) in SW_FAMILIES:
        en, zh = SW_FAMILIES[sw >> 8]
        return f"{en} ({sw:04X})", f"{zh}（{sw:04X}）"
    return (f"The card refused the command with status {sw:04X}; take the card out and try again, or key "
            f"in the card number and ID number", f"卡片返回错误状态{sw:04X}，请重新插卡或手工录入")
