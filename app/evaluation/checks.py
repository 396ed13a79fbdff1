"""Deterministic checks of an answer: contains / not_contains, regex, exact, JSON schema."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, field_validator

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\s*$", re.S)


@dataclass(slots=True)
class CheckResult:
    kind: str
    passed: bool
    detail: str = ""  # what failed (never the whole answer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_list(v: str | list[str] | None) -> list[str]:
    return [] if v is None else [v] if isinstance(v, str) else list(v)


class Expectation(BaseModel):
    """The expected elements of an answer; every given check must pass."""

    model_config = ConfigDict(extra="forbid")

    contains: str | list[str] | None = None
    not_contains: str | list[str] | None = None
    regex: str | list[str] | None = None  # re.search, each must match
    exact: str | None = None  # after stripping surrounding whitespace
    json_schema: dict[str, Any] | None = None  # the answer (code fences stripped) must be JSON valid against it
    case_sensitive: bool = True  # for contains / not_contains

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | list[str] | None) -> str | list[str] | None:
        for pattern in _as_list(v):
            re.compile(pattern)
        return v

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            try:
                jsonschema.validators.validator_for(v).check_schema(v)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON schema: {exc.message}") from None
        return v

    def is_empty(self) -> bool:
        return not any((self.contains, self.not_contains, self.regex, self.exact is not None, self.json_schema))


def parse_json_answer(text: str) -> Any:
    """The answer as JSON, allowing one surrounding code fence; raises ValueError."""
    match = _FENCE.match(text)
    return json.loads(match.group(1) if match else text)


def run_checks(expect: Expectation, answer: str) -> list[CheckResult]:
    out: list[CheckResult] = []
    fold = (lambda s: s) if expect.case_sensitive else str.casefold
    for needle in _as_list(expect.contains):
        ok = fold(needle) in fold(answer)
        out.append(CheckResult("contains", ok, "" if ok else f"lacks {needle!r}"))
    for needle in _as_list(expect.not_contains):
        ok = fold(needle) not in fold(answer)
        out.append(CheckResult("not_contains", ok, "" if ok else f"contains {needle!r}"))
    for pattern in _as_list(expect.regex):
        ok = re.search(pattern, answer) is not None
        out.append(CheckResult("regex", ok, "" if ok else f"no match for {pattern!r}"))
    if expect.exact is not None:
        ok = answer.strip() == expect.exact.strip()
        out.append(CheckResult("exact", ok, "" if ok else "differs from the expected answer"))
    if expect.json_schema is not None:
        try:
            jsonschema.validate(parse_json_answer(answer), expect.json_schema)
            out.append(CheckResult("json_schema", True))
        except ValueError:
            out.append(CheckResult("json_schema", False, "the answer is not JSON"))
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            out.append(CheckResult("json_schema", False, f"at {where}: {exc.message[:200]}"))
    return out
