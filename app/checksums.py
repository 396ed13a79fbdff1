"""Checksums shared by the request-log redactor and the guardrails' PII validators (a leaf module)."""

from __future__ import annotations


def luhn_ok(number: str) -> bool:
    """Luhn (mod-10) checksum of a digit string; anything but digits fails."""
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
