"""Pydantic validation errors of request bodies as OpenAI's 400s, naming the offending parameter.

The request models type their numbers and booleans strictly (``StrictInt``, ``StrictFloat``,
``StrictBool``): ``"max_tokens": "16"``, ``"stream": "true"`` or ``"temperature": "1"`` are refused the
way OpenAI refuses them (``Invalid type for 'max_tokens': expected an integer, but got a string
instead.``, code ``invalid_type``). An integer is still a valid number (``"temperature": 1``), as
OpenAI accepts it.
"""

from __future__ import annotations

from typing import Any

from app.errors import InvalidRequestError

# pydantic error types of a value of the wrong JSON type -> what OpenAI says was expected
EXPECTED = {"int_type": "an integer", "float_type": "a decimal", "bool_type": "a boolean",
            "string_type": "a string", "list_type": "an array", "dict_type": "an object",
            "model_type": "an object", "model_attributes_type": "an object", "int_from_float": "an integer"}
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "json_object"}


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, in OpenAI's words (``a string``, ``an integer``, ``null``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def type_error(param: str, expected: str, value: Any) -> InvalidRequestError:
    """OpenAI's 400 for a parameter of the wrong JSON type."""
    return InvalidRequestError(f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} "
                               "instead.", param=param, code="invalid_type")


def validation_error(exc: Any) -> InvalidRequestError:
    """Turn a pydantic ValidationError into a 400 naming the first offending field."""
    errors = exc.errors()
    first = max(errors, key=lambda e: len(e.get("loc", ())))  # in a union: the branch that got furthest
    param = _param(first) or None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        return InvalidRequestError(f"Unrecognized request argument supplied: '{param}'.", param=param,
                                   code="unknown_parameter")
    if param and first.get("type") in EXPECTED:
        # every union branch that failed on the type of this same value: "expected a string or an array"
        expected = [EXPECTED[e["type"]] for e in errors if e.get("type") in EXPECTED and _param(e) == param]
        wanted = " or ".join(dict.fromkeys(expected))
        return type_error(param, wanted, first.get("input"))
    return InvalidRequestError(f"Invalid value for '{param}': {msg}" if param else msg, param=param)


def _param(error: dict) -> str:
    loc: list[str] = []
    for part in (str(p) for p in error.get("loc", ())):
        if not _is_union_tag(part) and not (loc and loc[-1] == part == "json_schema"):
            loc.append(part)
    return ".".join(loc)


def _is_union_tag(part: str) -> bool:
    """Pydantic's loc entries naming a union member (``function-after[...]``, ``str``, ``TextPart``...)."""
    return part.startswith("function-") or part in _UNION_TAGS or part[:1].isupper() or "[" in part
