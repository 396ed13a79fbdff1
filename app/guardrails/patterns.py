"""Regex patterns of classic prompt injections and jailbreaks (a rule of their own and classifier features).

Each pattern has a name (the reason code suffix) and is matched case-insensitively on whitespace-normalised
text. They are deliberately narrow: an ordinary question that mentions "instructions" does not match.
"""

from __future__ import annotations

import re

_IGNORE = r"(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|set aside)"
_PRIOR = (r"(?:all |any |the |your |my |these |those |every )*"
          r"(?:previous|prior|above|earlier|preceding|original|initial|old|system|existing)")
_RULES = (r"(?:instructions?|prompts?|rules|directions?|directives?|guidelines|guardrails|constraints|context"
          r"|commands?|programming|restrictions)")

INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "ignore_instructions": re.compile(rf"\b{_IGNORE}\s+{_PRIOR}\s+{_RULES}\b"),
    "new_instructions": re.compile(r"\b(?:new|updated|real|true) (?:system )?instructions?\s*:|\bsystem override\b"
                                   r"|\bfrom now on,? you (?:will|must|are)\b"),
    "reveal_prompt": re.compile(r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell me|give me|write out)"
                                r"\s+(?:me\s+)?(?:your|the|all|its)\s+(?:\w+\s+){0,2}"
                                r"(?:system prompt|initial prompt|hidden prompt|original prompt|system message"
                                r"|instructions you were given|pre-?prompt)\b"),
    "dan_persona": re.compile(r"\bdo anything now\b|\byou are (?:now )?dan\b|\bdan mode\b|\bact as dan\b"),
    "developer_mode": re.compile(r"\b(?:developer|debug|god|admin|sudo|jailbreak|unrestricted) mode"
                                 r"\s*(?:enabled|activated|on)\b|\benable (?:developer|debug|god|jailbreak) mode\b"),
    "no_restrictions": re.compile(r"\b(?:pretend|imagine|act as if|act like|roleplay as|you are)\b.{0,60}"
                                  r"\b(?:no|without|free of|zero) (?:restrictions|rules|filters|limits|guidelines"
                                  r"|censorship|content policy|safety)\b"),
    "chat_template_tokens": re.compile(r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|endoftext\|>|\[/?inst\]"
                                       r"|<</?sys>>|<\|start_header_id\|>"),
}

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def pattern_hits(text: str, normalised: str | None = None) -> list[str]:
    """Names of the injection patterns that match ``text``."""
    t = normalise(text) if normalised is None else normalised
    return [name for name, pattern in INJECTION_PATTERNS.items() if pattern.search(t)]
