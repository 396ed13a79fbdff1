"""The PII and secret entities the output guard finds: bounded regexes (+ checksums) in priority order.

Every pattern has a bounded width (``max_len``, computed from the regex) so a streaming redactor knows how
much text a match can span. Tokens of unbounded length (API keys, JWTs) match a bounded head and then
absorb a ``tail`` (a character class run); private key blocks absorb everything up to their END line.
Trailing lookaheads look at most one character ahead. Secrets come first so a key's digits are never
half-matched as a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import regex

from app.guardrails import validators

try:  # the width computation of the stdlib parser (``sre_parse`` before 3.11)
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]


@dataclass(frozen=True)
class Entity:
    name: str  # the placeholder is "[NAME]"
    kind: Literal["pii", "secret"]
    source: str  # the regex; a group named ``keep`` (a "password=" prefix) stays in the text
    validator: Callable[[str], bool] | None = None  # on the match minus the ``keep`` group
    tail: str | None = None  # a one-character class absorbed after the match, e.g. "[A-Za-z0-9_-]"
    until: str | None = None  # or: everything through the first match of this regex (end of the block)

    @property
    def placeholder(self) -> str:
        return f"[{self.name}]"

    @cached_property
    def max_len(self) -> int:
        """The longest text the head pattern can match (hold-back bound of a streaming redactor)."""
        return int(_sre_parse.parse(self.source).getwidth()[1])


_KEY = r"[A-Za-z0-9_-]"
_ENTITIES: list[Entity] = [
    Entity("PRIVATE_KEY", "secret", r"-----BEGIN (?:[A-Z0-9]{1,10} ){0,3}PRIVATE KEY(?: BLOCK)?-----",
           until=r"-----END (?:[A-Z0-9]{1,10} ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
    Entity("ANTHROPIC_KEY", "secret", rf"(?<![A-Za-z0-9_-])sk-ant-[a-z]{{2,8}}\d{{0,3}}-{_KEY}{{20}}", tail=_KEY),
    Entity("OPENAI_KEY", "secret", rf"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?{_KEY}{{20}}", tail=_KEY),
    Entity("STRIPE_KEY", "secret", r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16}", tail="[A-Za-z0-9]"),
    Entity("AWS_ACCESS_KEY", "secret", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    Entity("AWS_SECRET_KEY", "secret", r"(?P<keep>(?i:aws_?secret_?(?:access_?)?key)[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
                                      r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
    Entity("GITHUB_TOKEN", "secret", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30}|github_pat_[A-Za-z0-9_]{30})",
           tail="[A-Za-z0-9_]"),
    Entity("GOOGLE_API_KEY", "secret", rf"(?<![A-Za-z0-9_-])AIza{_KEY}{{35}}", tail=_KEY),
    Entity("SLACK_TOKEN", "secret", r"(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10}", tail="[A-Za-z0-9-]"),
    Entity("SLACK_WEBHOOK", "secret", r"https://hooks\.slack\.com/services/[A-Za-z0-9]{4}", tail="[A-Za-z0-9/_-]"),
    Entity("JWT", "secret", rf"(?<![A-Za-z0-9_-])eyJ{_KEY}{{5,200}}\.eyJ{_KEY}{{5}}", tail=r"[A-Za-z0-9_.-]"),
    Entity("BEARER_TOKEN", "secret", r"(?P<keep>(?i:\bbearer)\s{1,3})[A-Za-z0-9._~+/=-]{20}",
           tail=r"[A-Za-z0-9._~+/=-]"),
    Entity("CREDENTIAL", "secret", r"(?P<keep>(?i:\b(?:api[_-]?key|secret[_-]?key|client[_-]?secret|password|passwd"
                                   r"|access[_-]?token|auth[_-]?token))[\"']?\s{0,3}[:=]\s{0,3}[\"']?)"
                                   r"[A-Za-z0-9._~+/!@#$%^&*-]{8}", tail=r"[A-Za-z0-9._~+/!@#$%^&*-]"),
    Entity("EMAIL", "pii", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,4}[A-Za-z]{2,24}"
                           r"(?![A-Za-z0-9-])"),
    Entity("IBAN", "pii", r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
           validator=validators.iban_ok),
    Entity("CREDIT_CARD", "pii", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])", validator=validators.card_ok),
    Entity("US_SSN", "pii", r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])", validator=validators.ssn_ok),
    Entity("PHONE", "pii", r"(?<![\w.+#/-])(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}|\(\d{3}\) ?\d{3}[ .-]\d{4}"
                           r"|\d{3}[.-]\d{3}[.-]\d{4}|0\d{1,4}(?:[ -]\d{2,4}){2,3})(?![\w])",
           validator=validators.phone_ok),
]

ENTITIES: dict[str, Entity] = {e.name: e for e in _ENTITIES}
PII_ENTITIES = [e.name for e in _ENTITIES if e.kind == "pii"]
SECRET_ENTITIES = [e.name for e in _ENTITIES if e.kind == "secret"]


_ASCII = [chr(i) for i in range(32, 127)] + ["\t", "\n", "\r"]


@dataclass(frozen=True)
class Compiled:
    entity: Entity
    fast: re.Pattern[str]  # stdlib regex: settled matches (faster)
    pattern: regex.Pattern[str]  # the same with partial matching: could a match still start here?
    first: frozenset[str]  # ASCII characters a match can start with (any non-ASCII character may)
    tail: re.Pattern[str] | None
    until: re.Pattern[str] | None
    max_len: int

    def may_start(self, ch: str) -> bool:
        return ch in self.first or ord(ch) > 126


def compile_entity(entity: Entity) -> Compiled:
    partial = regex.compile(entity.source)
    first = frozenset(ch for ch in _ASCII if partial.match(ch, partial=True) is not None)
    return Compiled(entity, re.compile(entity.source), partial, first,
                    re.compile(entity.tail + "+") if entity.tail else None,
                    re.compile(entity.until) if entity.until else None, entity.max_len)
