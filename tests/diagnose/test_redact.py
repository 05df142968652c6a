"""Redaction of personal data by shape, by key, and by what was learned from structured data."""

from __future__ import annotations

import logging

import pytest

from edge.card.profile import ssn_check_char
from edge.redact import NAME, PIN, SECRET, Redactor, install_log_redaction, redact_obj, redact_text


def ssn(first17: str) -> str:
    return first17 + ssn_check_char(first17)


def ssn_with_x() -> str:
    # Walk birth serials until the GB 11643 check character is X (about one in eleven).
    for n in range(1000):
        first17 = f"33030219850612{n:03d}"
        if ssn_check_char(first17) == "X":
            return first17 + "X"
    raise AssertionError("no X check digit found")


@pytest.mark.parametrize("text", [
    "certno={s}", "身份证号{s}已核对", "ssn: {s}, ok", '{{"ssn": "{s}"}}', "({s})",
])
def test_ssn_in_any_context(text):
    s = ssn_with_x()
    out = redact_text(text.format(s=s))
    assert s not in out and s[6:] not in out
    assert s[:6] + "*" * 12 in out    # the region stays: it identifies a city, not a person
    lower = text.format(s=s[:-1] + "x")
    assert s[:-1] not in redact_text(lower)


def test_card_number_card_id_and_pin_shapes():
    text = ("card C00000042 no 123456789 id 330300D1560000050011223344556677 PIN 918273 "
            "password=4455 密码：667788 VERIFY 00 20 00 00 03 91 82 73 and 0020000003918273 then 9000")
    out = redact_text(text)
    for secret in ("C00000042", "123456789", "D1560000050011223344556677", "918273", "4455", "667788", "91 82 73"):
        assert secret not in out, (secret, out)
    assert "330300" in out and "9000" in out and "00 20 00 00 03 ** ** **" in out
    assert out.count(PIN) == 3
    # A trace never runs into the next line (and the next line's digits are not taken for a PIN).
    assert redact_text("> 0020000003918273\n20 26 ok") == "> 0020000003******\n20 26 ok"


def test_grouped_ssn_and_lower_case_card_number():
    s = ssn("33030219900101123")
    for text in (f"{s[:6]} {s[6:14]} {s[14:]}", f"{s[:6]}-{s[6:14]}-{s[14:]}"):
        out = redact_text(f"ID {text} ok")
        assert s[6:14] not in out and out == f"ID {s[:6]}{'*' * 12} ok"
    assert redact_text("card a12345678 read") == "card ********* read"
    assert redact_text("a sentence containing abcdefghi words") == "a sentence containing abcdefghi words"


def test_hashes_timestamps_and_words_survive():
    text = ("sha256 9f2c4e1b0a7d3e5f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f at 1764000000123 "
            "seq 42 amount 12800 fen SETTLEMEN digest ABCDEFGHJKLM")
    assert redact_text(text) == text


def test_names_after_markers_and_learned_names():
    r = Redactor()
    assert r.text("姓名：欧阳建国 持卡人=李四 name: Zhang San") == f"姓名：{NAME} 持卡人={NAME} name: {NAME}"
    r.obj({"identity": {"name": "王小明", "ssn": ssn("11010519491231002")}})
    out = r.text("王小明 asked for a refund; 小明 is fine")
    assert "王小明" not in out and out.startswith(NAME)


def test_structured_keys_and_secrets():
    s = ssn("44030119900101123")
    data = {"name": "张三", "certno": s, "card": {"card_no": "A12345678", "card_id": "330300D15600000500BF7A0D1C5E1A2B"},
            "pin": "123456", "psn_no": "P000012345", "centre": {"token": "ET-abc", "private_key": "c2VlZA=="},
            "bundle_key": "PUBLIC==", "amounts": {"medfee_sumamt": 12800}, "items": [{"code": "XJ01", "cnt": "2"}],
            "raw": b"\x01\x02"}
    out = redact_obj(data)
    assert out["name"] == NAME and out["pin"] == PIN
    assert out["certno"] == s[:6] + "*" * 12
    assert out["card"] == {"card_no": "*********", "card_id": "330300" + "*" * 26}
    assert out["psn_no"] == "******2345"
    assert out["centre"] == {"token": SECRET, "private_key": SECRET}
    assert out["bundle_key"] == "PUBLIC==" and out["amounts"] == {"medfee_sumamt": 12800}
    assert out["items"] == [{"code": "XJ01", "cnt": "2"}] and out["raw"] == "0102"
    assert data["name"] == "张三"    # the input is not modified


def test_log_filter_redacts_records(tmp_path):
    logger = logging.getLogger("test.redact.filter")
    logger.propagate = False
    path = tmp_path / "agent.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        install_log_redaction(logger)
        s = ssn_with_x()
        logger.info("read card of %s: ssn %s card %s pin=%s", "姓名:赵六", s, "C00000042", "246810")
    finally:
        handler.close()
        logger.removeHandler(handler)
    text = path.read_text(encoding="utf-8")
    assert s not in text and "C00000042" not in text and "246810" not in text and "赵六" not in text
    assert "read card of" in text
