"""PII and secret redaction for logged prompts/responses.

Regexes with checksums where the format has one (Luhn for cards, mod-97 for IBANs) so that ordinary
numbers survive. Secrets go first so a key's digits are never half-matched as a phone number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from app.checksums import luhn_ok


@dataclass(slots=True)
class Redaction:
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ipv4_ok(match: re.Match[str]) -> bool:
    return all(int(part) <= 255 for part in match.group(0).split("."))


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _phone_ok(match: re.Match[str]) -> bool:
    text = match.group(0)
    return 7 <= len(re.sub(r"\D", "", text)) <= 15 and not _DATE.fullmatch(text)


# (label, pattern, validator) in application order; a group named "keep" is left in place.
_RULES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool] | None]] = [
    ("SECRET", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), None),
    ("SECRET", re.compile(r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}"), None),  # OpenAI/Anthropic style
    ("SECRET", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), None),  # AWS access key id
    ("SECRET", re.compile(r"\b(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}"), None),
    ("SECRET", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), None),  # Slack
    ("SECRET", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), None),  # Google API key
    ("SECRET", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), None),  # JWT
    ("SECRET", re.compile(r"(?i)(?P<keep>\b(?:api[_-]?key|token|secret|password)[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
                          r"[A-Za-z0-9._~+/-]{12,}"), None),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), None),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
     lambda m: iban_ok(m.group(0))),
    ("CREDIT_CARD", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _card_ok),
    ("SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    ("IP", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ipv4_ok),
    ("PHONE", re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w.])"
                         r"|(?<![\w.])\+\d{7,15}\b"), _phone_ok),
]


def redact(text: str) -> Redaction:
    """Replace PII/secrets with ``[LABEL]``; return the new text and how many of each were found."""
    counts: Counter[str] = Counter()
    for label, pattern, validator in _RULES:
        def sub(match: re.Match[str], label: str = label, validator=validator) -> str:
            if validator is not None and not validator(match):
                return match.group(0)
            counts[label] += 1
            keep = match.groupdict().get("keep") or ""  # e.g. "api_key=" stays, only the value goes
            return f"{keep}[{label}]"

        text = pattern.sub(sub, text)
    return Redaction(text, dict(counts))


def redact_text(text: str | None) -> str | None:
    return None if text is None else redact(text).text
