"""The schema the pools decode with: the client's schema, with bounds xgrammar would not apply made explicit.

xgrammar 0.2.8 turns ``format: email`` into an unbounded grammar (any number of local-part and
domain characters) and ignores ``maxLength`` beside a ``format`` (vLLM #45592). A random-weight
model — or a looping real one — then fills the address until ``max_tokens`` and the answer is
truncated (issue 13: 4 of 100 in the structured-output benchmark, all on an email field).

:func:`decoding_schema` rewrites every ``format: email`` string (without a ``pattern`` of its own)
into an equivalent-or-narrower ``pattern`` that xgrammar does enforce, bounded by RFC 5321's own
limits (local part <= 64 octets, address <= 254) or by the client's tighter ``maxLength``. Every
string the pattern admits is a valid ``format: email`` within ``maxLength``, so the gateway's final
validation (against the client's original schema) still passes; the narrowing: at most two dots in
the local part (``atext`` characters only, no quoted local parts) and two to four domain labels.
Only the decoder sees the rewritten schema; providers and the validator get the client's.
"""

from __future__ import annotations

from typing import Any

from app.structured.schema_support import _SCHEMA_LISTS, _SCHEMA_MAPS, _SCHEMA_VALUES, MIN_EMAIL

RFC5321_MAX = 254  # octets of a deliverable address (a 256-octet path minus the angle brackets)
LOCAL_MAX, LABEL_MAX = 64, 63
_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"


def _label(k: int) -> str:
    """A domain label of 1..k characters (letters, digits, inner hyphens)."""
    return "[A-Za-z0-9]" if k <= 1 else f"[A-Za-z0-9](?:[A-Za-z0-9-]{{0,{k - 2}}}[A-Za-z0-9])?"


def _dotted(parts: list[str]) -> str:
    return "\\.".join(parts)


def email_pattern(max_length: int = RFC5321_MAX) -> str:
    """A regex (xgrammar-compatible) of email addresses no longer than ``max_length`` (>= MIN_EMAIL)."""
    n = min(max_length, RFC5321_MAX)
    if n < MIN_EMAIL:
        raise ValueError(f"no email address fits in {max_length} characters")
    a = min(LOCAL_MAX, max(1, min((n - 1) // 2, n - 4)))  # local part; the domain keeps >= 3 ("b.c")
    b = n - 1 - a
    local = [f"{_ATEXT}{{1,{a}}}"]
    for dots in (1, 2):  # segments of equal budget, the dots included
        seg = (a - dots) // (dots + 1)
        if seg >= 1:
            local.append(_dotted([f"{_ATEXT}{{1,{seg}}}"] * (dots + 1)))
    domain = []
    for dots in (1, 2, 3):  # the last `dots` labels share a budget; the first label takes the rest
        tail = min(LABEL_MAX, max(1, b // (dots + 2)))
        head = min(LABEL_MAX, b - dots - dots * tail)
        if head >= 1:
            domain.append(_dotted([_label(head), *[_label(tail)] * dots]))
    return f"^(?:{'|'.join(local)})@(?:{'|'.join(domain)})$"


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        out = [_rewrite(v) for v in node]
        return node if all(o is v for o, v in zip(out, node, strict=True)) else out
    if not isinstance(node, dict):
        return node
    changed: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            sub = {k: _rewrite(v) for k, v in value.items()}
            if any(sub[k] is not value[k] for k in value):
                changed[key] = sub
        elif key in _SCHEMA_LISTS or key in _SCHEMA_VALUES:
            sub = _rewrite(value)
            if sub is not value:
                changed[key] = sub
    if node.get("format") == "email" and "pattern" not in node and "minLength" not in node:
        limit = node.get("maxLength")
        out = {k: v for k, v in node.items() if k not in ("format", "maxLength")}
        out.update(changed)
        out["pattern"] = email_pattern(limit if isinstance(limit, int) else RFC5321_MAX)
        return out
    return {**node, **changed} if changed else node


def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` for the decoder (the same object when nothing needs rewriting)."""
    return _rewrite(schema)
