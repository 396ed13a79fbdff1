"""Is a client's JSON Schema valid (draft 2020-12) and enforceable by the pools' guided decoding?

The pools decode with xgrammar 0.2.8 (``structured_outputs_config.backend: xgrammar``). Probed
against that version (``tests/unit/test_structured_schema_support.py`` re-checks each entry with
xgrammar itself): the keywords below are either ignored by the grammar (a violating output could
be generated) or make it reject valid outputs. A schema using them is refused with a 400 naming
the keyword, rather than silently weakened. ``oneOf`` is decoded as ``anyOf``; the final text is
validated with jsonschema, so an overlap is caught there (and re-asked). ``maxLength`` beside
``format: email`` is the one length-beside-format the gateway honours: the pools decode the address
with a bounded pattern (:mod:`app.structured.decode_schema`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from app.errors import InvalidRequestError

# Formats xgrammar turns into a grammar (vllm.v1.structured_output.backend_xgrammar.STRING_SUPPORTED_FORMATS).
SUPPORTED_FORMATS = frozenset({
    "email", "date", "time", "date-time", "duration", "ipv4", "ipv6", "hostname", "uuid", "uri",
    "uri-reference", "uri-template", "json-pointer", "relative-json-pointer",
})
# Keywords xgrammar 0.2.8 does not enforce (or enforces wrongly) anywhere they appear.
UNSUPPORTED_KEYWORDS = {
    "uniqueItems": "ignored by the grammar",
    "contains": "rejects valid arrays",
    "minContains": "not supported",
    "maxContains": "not supported",
    "not": "ignored by the grammar",
    "if": "conditional schemas are not supported",
    "then": "conditional schemas are not supported",
    "else": "conditional schemas are not supported",
    "dependentRequired": "rejects valid objects",
    "dependentSchemas": "rejects valid objects",
    "propertyNames": "rejects valid objects",
    "maxProperties": "rejects valid objects",
}
MAX_DEPTH = 32
MIN_EMAIL = 5  # "a@b.c": the shortest address the bounded email pattern admits (app/structured/decode_schema.py)
# Where sub-schemas live (everything else is a value: enum, const, default, examples, ...).
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "contains", "not", "if", "then", "else", "propertyNames",
                  "unevaluatedProperties", "unevaluatedItems", "additionalItems")


def _walk(node: Any, path: str, depth: int = 0) -> Iterator[tuple[str, str, str]]:
    """(keyword, JSON pointer, reason) for every construct guided decoding cannot enforce."""
    if depth > MAX_DEPTH:
        yield "depth", path or "/", f"nesting deeper than {MAX_DEPTH} levels"
        return
    if not isinstance(node, dict):
        return
    for key, reason in UNSUPPORTED_KEYWORDS.items():
        if key in node:
            yield key, path or "/", reason
    if "multipleOf" in node:
        value = node["multipleOf"]
        if not (isinstance(value, int) and node.get("type") == "integer"):
            yield "multipleOf", path or "/", "only integer multipleOf on type integer is enforced"
    email_bound = node.get("format") == "email" and "pattern" not in node and "minLength" not in node
    if email_bound and isinstance(node.get("maxLength"), int) and node["maxLength"] < MIN_EMAIL:
        yield "maxLength", path or "/", f"no email address fits in {node['maxLength']} characters"
    elif not email_bound and ("pattern" in node or "format" in node) and ("minLength" in node or "maxLength" in node):
        bound = "maxLength" if "maxLength" in node else "minLength"
        yield bound, path or "/", "length bounds together with pattern/format are ignored (vLLM #45592)"
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt not in SUPPORTED_FORMATS:
        yield "format", path or "/", f"format '{fmt}' is not enforced (see SUPPORTED_FORMATS in docs/api.md)"
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) >= 2:
        yield "allOf", path or "/", "allOf with several branches is not enforced"
    if isinstance(node.get("patternProperties"), dict) and ("properties" in node or len(node["patternProperties"]) > 1):
        yield "patternProperties", path or "/", "patternProperties beside properties (or several) rejects valid objects"
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        yield "$ref", path or "/", "only local references (#/...) are supported"
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _walk(sub, f"{path}/{key}/{name}", depth + 1)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from _walk(sub, f"{path}/{key}/{i}", depth + 1)
        elif key in _SCHEMA_VALUES:
            yield from _walk(value, f"{path}/{key}", depth + 1)


def unsupported_keywords(schema: Any) -> list[tuple[str, str, str]]:
    return list(_walk(schema, ""))


def check_schema(schema: Any, param: str, *, enforceable: bool = True) -> None:
    """400 unless ``schema`` is a JSON Schema (draft 2020-12) object and, if ``enforceable``, decodable."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"'{param}' must be a JSON Schema object.", param=param, code="invalid_schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.path) if exc.path else "/"
        raise InvalidRequestError(f"'{param}' is not a valid JSON Schema (draft 2020-12) at {where}: "
                                  f"{exc.message[:300]}", param=param, code="invalid_schema") from None
    except RecursionError:
        raise InvalidRequestError(f"'{param}' is nested too deeply.", param=param, code="invalid_schema") from None
    if not enforceable:
        return
    found = unsupported_keywords(schema)
    if found:
        keyword, where, reason = found[0]
        names = sorted({k for k, _, _ in found})
        raise InvalidRequestError(
            f"The schema keyword '{keyword}' at {where} cannot be enforced by this gateway's guided decoding "
            f"({reason}); unsupported keywords in this schema: {', '.join(names)}.",
            param=param, code="unsupported_schema_keyword")
