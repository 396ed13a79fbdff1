"""Checksums and shape checks that keep ordinary numbers from being masked as PII."""

from __future__ import annotations

import re

from app.checksums import luhn_ok

_NON_DIGIT = re.compile(r"\D")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")  # an SSN (valid or not) is never a phone number
_DATE = re.compile(r"\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}")


def digits(text: str) -> str:
    return _NON_DIGIT.sub("", text)


# Issuer prefixes (IIN ranges) of the major card networks: Visa, Mastercard, Amex, Discover, Diners, JCB,
# UnionPay, Maestro. A Luhn-valid number with another prefix (an order or tracking number) is left alone.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|3(?:0[0-5]|6|8|9)|35"
                          r"|5[06-9]|6[0-9]")


def card_ok(text: str) -> bool:
    number = digits(text)
    if not 13 <= len(number) <= 19 or not luhn_ok(number) or not _CARD_PREFIX.match(number):
        return False
    groups = re.split(r"[ -]", text)
    return len(groups) == 1 or len({c for c in text if not c.isdigit()}) == 1  # one kind of separator


def iban_ok(text: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(text: str) -> bool:
    """US SSN ``AAA-GG-SSSS``: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    area, group, serial = text.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def phone_ok(text: str) -> bool:
    """8-15 digits, not a date, not a run of years (``2023 2024 2025``)."""
    n = digits(text)
    if not 8 <= len(n) <= 15 or _DATE.fullmatch(text.strip()) or _SSN_SHAPE.fullmatch(text.strip()):
        return False
    groups = [g for g in re.split(r"[^\d]+", text) if g]
    return not (len(groups) > 1 and all(len(g) == 4 and g[:2] in ("19", "20") for g in groups))
