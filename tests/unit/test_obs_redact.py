"""PII redaction: each kind is caught (with checksums where the format has one); ordinary text survives."""

from __future__ import annotations

import pytest

from app.observability.redact import iban_ok, luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("mail john.doe+x@example.co.uk now", "mail [EMAIL] now", {"EMAIL": 1}),
        ("call +1 (415) 555-2671 or 020 7946 0958", "call [PHONE] or [PHONE]", {"PHONE": 2}),
        ("card 4111 1111 1111 1111.", "card [CREDIT_CARD].", {"CREDIT_CARD": 1}),
        ("card 5500-0000-0000-0004", "card [CREDIT_CARD]", {"CREDIT_CARD": 1}),
        ("pay to DE89 3704 0044 0532 0130 00 today", "pay to [IBAN] today", {"IBAN": 1}),
        ("GB82WEST12345698765432", "[IBAN]", {"IBAN": 1}),
        ("ssn 123-45-6789", "ssn [SSN]", {"SSN": 1}),
        ("from 192.168.1.20:8080", "from [IP]:8080", {"IP": 1}),
        ("key sk-proj-abcdefghijklmnop1234", "key [SECRET]", {"SECRET": 1}),
        ("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "key [SECRET]", {"SECRET": 1}),
        ("Authorization: Bearer abcdefghijklmnopqrstuv", "Authorization: [SECRET]", {"SECRET": 1}),
        ('{"api_key": "abcd1234efgh5678"}', '{"api_key": "[SECRET]"}', {"SECRET": 1}),
        ("AKIAIOSFODNN7EXAMPLE", "[SECRET]", {"SECRET": 1}),
        ("ghp_0123456789abcdefghijABCDEFGHIJ", "[SECRET]", {"SECRET": 1}),
    ],
)
def test_redacts(text: str, expected: str, counts: dict[str, int]) -> None:
    result = redact(text)
    assert result.text == expected
    assert result.counts == counts


@pytest.mark.parametrize(
    "text",
    [
        "I have 3 apples, version 1.2.3, year 2024, order 12345678.",
        "on 2024-05-01 at 10:30, or 01/02/2024",
        "card 4111 1111 1111 1112 fails Luhn",
        "999.1.1.1 is not an address",
        "DE00 3704 0044 0532 0130 00 bad checksum",
        "total 1,234.56 USD; pi is 3.14159",
        "a normal sentence about skiing and tokens",
    ],
)
def test_leaves_ordinary_text(text: str) -> None:
    result = redact(text)
    assert result.text == text and result.total == 0


def test_mixed_counts_and_checksums() -> None:
    result = redact("a@b.io, c@d.org, 4111111111111111, 123-45-6789")
    assert result.counts == {"EMAIL": 2, "CREDIT_CARD": 1, "SSN": 1}
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")
