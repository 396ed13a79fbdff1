"""The decoder's schema: ``format: email`` decoded as a bounded pattern xgrammar enforces (RFC 5321 limits, or
the client's maxLength), so a looping model cannot fill an address until max_tokens; the client's schema is what
the answer is validated against."""

from __future__ import annotations

import json
import random
import re

import pytest

from app.errors import InvalidRequestError
from app.structured.decode_schema import RFC5321_MAX, decoding_schema, email_pattern
from app.structured.schema_support import check_schema
from app.structured.validate import validate_text

EMAIL = {"type": "string", "format": "email"}
NESTED = {"type": "object", "properties": {
    "user": {"type": "object", "properties": {"id": {"type": "integer"}, "email": EMAIL}, "required": ["id"]},
    "cc": {"type": "array", "items": {"type": "string", "format": "email", "maxLength": 40}}}}


def _xgrammar_accepts(schema: dict, text: str) -> bool:
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string

    return _is_grammar_accept_string(xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False), text)


def test_only_the_decoder_copy_changes_and_unrelated_schemas_are_returned_as_is() -> None:
    before = json.dumps(NESTED)
    dec = decoding_schema(NESTED)
    assert json.dumps(NESTED) == before  # the client's schema (the validator's) is untouched
    email = dec["properties"]["user"]["properties"]["email"]
    assert "format" not in email and email["pattern"] == email_pattern(RFC5321_MAX)
    assert dec["properties"]["cc"]["items"]["pattern"] == email_pattern(40)
    plain = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}
    assert decoding_schema(plain) is plain
    own = {"type": "string", "format": "email", "pattern": "^a@b\\.c$"}
    assert decoding_schema(own) is own  # a pattern of the client's is kept as it is


@pytest.mark.parametrize("limit", [5, 6, 12, 40, 100, RFC5321_MAX, 1000])
def test_every_address_the_pattern_admits_is_valid_and_within_the_bound(limit: int) -> None:
    rx = re.compile(email_pattern(limit))
    schema = {"type": "string", "format": "email", "maxLength": limit}
    rng = random.Random(limit)
    atext, label = "abcXYZ019!#$%&'*+/=?^_`{|}~-", "abcdefghXYZ0189-"
    tried, seg = 0, max(2, min(70, limit // 3))
    for _ in range(3000):  # random addresses of every shape; each one the regex admits must validate
        local = ".".join("".join(rng.choice(atext) for _ in range(rng.randint(1, seg)))
                         for _ in range(rng.randint(1, 3)))
        domain = ".".join("".join(rng.choice(label) for _ in range(rng.randint(1, seg)))
                          for _ in range(rng.randint(1, 5)))
        text = f"{local}@{domain}"
        if rx.match(text):
            tried += 1
            assert len(text) <= min(limit, RFC5321_MAX)
            assert validate_text(json.dumps(text), schema).valid, text
    assert tried >= (20 if limit >= 12 else 1)  # the check above really ran


def test_xgrammar_enforces_the_bound() -> None:
    dec = {"type": "string", "pattern": email_pattern(RFC5321_MAX)}
    for ok in ("john.smith@example.com", "a@b.co", "o'brien+tag@mail.example.co.uk", "x" * 64 + "@" + "y" * 63 + ".io"):
        assert _xgrammar_accepts(dec, json.dumps(ok)), ok
    for bad in ("x" * 65 + "@b.co", "a@b", "a b@c.d", "a@" + "y" * 64 + ".io"):
        assert not _xgrammar_accepts(dec, json.dumps(bad)), bad
    short = {"type": "string", "pattern": email_pattern(12)}
    assert _xgrammar_accepts(short, '"ab@cd.ef"') and not _xgrammar_accepts(short, '"abcdef@ghij.kl"')


def test_max_length_beside_email_is_accepted_other_length_bounds_still_refused() -> None:
    check_schema({"type": "string", "format": "email", "maxLength": 40}, "s")
    for schema, keyword in (({"type": "string", "format": "email", "maxLength": 4}, "maxLength"),
                            ({"type": "string", "format": "email", "minLength": 8}, "minLength"),
                            ({"type": "string", "format": "date", "maxLength": 20}, "maxLength"),
                            ({"type": "string", "pattern": "^a+$", "maxLength": 2}, "maxLength")):
        with pytest.raises(InvalidRequestError) as info:
            check_schema(schema, "s")
        assert info.value.code == "unsupported_schema_keyword" and f"'{keyword}'" in info.value.message
